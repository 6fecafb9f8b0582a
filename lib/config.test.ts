import { loadConfig } from './config';

describe('REDIS_NAMESPACE', () => {
  it('prefixes every Redis key: storefront by default, CACHE_NAMESPACE (its former name) when it alone is set', () => {
    expect(loadConfig({}).REDIS_NAMESPACE).toBe('storefront');
    expect(loadConfig({ CACHE_NAMESPACE: 'shop-a' }).REDIS_NAMESPACE).toBe('shop-a');
    expect(loadConfig({ CACHE_NAMESPACE: 'old', REDIS_NAMESPACE: 'shop-b' }).REDIS_NAMESPACE).toBe('shop-b');
    expect(() => loadConfig({ REDIS_NAMESPACE: 'has space' })).toThrow(/REDIS_NAMESPACE/);
  });
});
