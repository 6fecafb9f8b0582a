/** `describe`, or `describe.skip` when global setup found no Redis (and `redis-server` for the ones that start their own). */
export const describeWithRedis: jest.Describe = process.env.TEST_REDIS_AVAILABLE === '0' ? describe.skip : describe;
export const itWithRedis: jest.It = process.env.TEST_REDIS_AVAILABLE === '0' ? it.skip : it;
