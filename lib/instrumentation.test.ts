import { serviceName } from './instrumentation';

describe('service names', () => {
  it('name each process after its entry point, and npm start (all in one) storefront', () => {
    expect(serviceName('/srv/app/gateway/index.ts')).toBe('storefront-gateway');
    expect(serviceName('/srv/app/subgraphs/reviews/index.ts')).toBe('storefront-reviews');
    expect(serviceName('/srv/app/scripts/start.ts')).toBe('storefront');
    expect(serviceName('')).toBe('storefront');
  });
});
