import { ConfigError, loadConfig } from './config';
import { clusterUrl, isRedisNodeList, isRedisUrl, parseRedisUrl } from './redis-url';

describe('Redis URLs', () => {
  it('leaves a single Redis URL to node-redis', () => {
    expect(parseRedisUrl('redis://user:secret@cache:6380/2')).toEqual({
      cluster: false,
      url: 'redis://user:secret@cache:6380/2',
    });
  });

  it('reads a cluster URL: seed nodes (IPv6 in brackets), credentials decoded, TLS from rediss', () => {
    expect(parseRedisUrl('rediss+cluster://app:p%40ss%3Aword@10.0.0.1:7000,[::1]:7001,redis-2.redis:7002/')).toEqual({
      cluster: true,
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '::1', port: 7001 },
        { host: 'redis-2.redis', port: 7002 },
      ],
      username: 'app',
      password: 'p@ss:word',
      tls: true,
    });
    expect(parseRedisUrl('redis+cluster://:secret@a:1')).toMatchObject({ password: 'secret', tls: false });
    expect(parseRedisUrl('redis+cluster://a:1')).not.toHaveProperty('password');
    for (const bad of [
      'redis+cluster://a',
      'redis+cluster://a:1,,b:2',
      'redis+cluster://a:70000',
      'redis+cluster://a:1/0',
    ])
      expect(() => parseRedisUrl(bad)).toThrow('redis+cluster://');
  });

  it('builds the cluster URL of REDIS_CLUSTER_NODES, with REDIS_URL giving only the credentials and TLS', () => {
    expect(clusterUrl(' a:7000 , b:7001')).toBe('redis+cluster://a:7000,b:7001');
    expect(clusterUrl('a:7000,[::1]:7001', 'rediss://app:p%40ss@ignored:6379/3')).toBe(
      'rediss+cluster://app:p%40ss@a:7000,[::1]:7001',
    );
    expect(clusterUrl('c:1', 'redis+cluster://:pw@a:1,b:2')).toBe('redis+cluster://:pw@c:1');
    expect(parseRedisUrl(clusterUrl('a:1', 'rediss://app:p%40ss@x'))).toMatchObject({
      username: 'app',
      password: 'p@ss',
      tls: true,
    });
    expect([isRedisNodeList('a:1,b:2'), isRedisNodeList('a'), isRedisNodeList('')]).toEqual([true, false, false]);
    expect([isRedisUrl('redis://a:1'), isRedisUrl('redis+cluster://a:1,b:2'), isRedisUrl('a:1,b:2')]).toEqual([
      true,
      true,
      false,
    ]);
  });

  it('is what loadConfig gives as REDIS_URL when REDIS_CLUSTER_NODES is set, and a bad value names the variable', () => {
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:7000,b:7001' }).REDIS_URL).toBe('redis+cluster://a:7000,b:7001');
    expect(
      loadConfig({ REDIS_CLUSTER_NODES: 'a:7000', REDIS_URL: 'rediss://default:pw@elsewhere:6379' }).REDIS_URL,
    ).toBe('rediss+cluster://default:pw@a:7000');
    expect(loadConfig({ REDIS_URL: 'redis+cluster://a:7000,b:7001' }).REDIS_URL).toBe('redis+cluster://a:7000,b:7001');
    expect(loadConfig({ REDIS_URL: 'redis://a:6379' }).REDIS_URL).toBe('redis://a:6379');
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'a,b' })).toThrow(ConfigError);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'a,b' })).toThrow(/REDIS_CLUSTER_NODES: must be host:port/);
    expect(() => loadConfig({ REDIS_URL: 'redis+cluster://a' })).toThrow(/REDIS_URL: must be a redis:\/\/ URL/);
  });
});
