import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { useAdmission, type AdmissionOptions } from './admission';

/** A server whose every admitted request waits until the test releases it (then answers at once until `hold()`). */
async function serve(options: AdmissionOptions) {
  const refusals = { count: 0 };
  const admission = useAdmission({
    isBackground: (res) => res.req.headers['x-background'] === '1',
    ...options,
    onRefuse: () => (refusals.count += 1),
  });
  const waiting: Array<() => void> = [];
  let holding = true;
  const app = express();
  app.post('/', admission.middleware, (_req, res) => {
    if (holding) waiting.push(() => res.json({ ok: true }));
    else res.json({ ok: true });
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const send = async ({ background = false } = {}) => {
    const response = await fetch(url, { method: 'POST', headers: background ? { 'x-background': '1' } : {} });
    return {
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
      body: (await response.json()) as any,
    };
  };
  const releaseAll = () => {
    holding = false;
    waiting.splice(0).forEach((release) => release());
  };
  const hold = () => {
    holding = true;
  };
  const until = async (check: () => boolean) => {
    for (let i = 0; i < 200 && !check(); i += 1) await new Promise((resolve) => setTimeout(resolve, 5));
  };
  return {
    admission,
    refusals,
    send,
    waiting,
    hold,
    releaseAll,
    until,
    close: async () => {
      releaseAll();
      admission.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('admission', () => {
  it('runs background work on spare capacity only: never queued, never past half the slots', async () => {
    const server = await serve({ maxInFlight: 4, initialInFlight: 4, maxQueueMs: 1_000 });
    try {
      // Idle: a background request runs like any other.
      server.releaseAll();
      expect((await server.send({ background: true })).status).toBe(200);
      server.hold();
      const held = [server.send(), server.send()];
      await server.until(() => server.waiting.length === 2);
      // Two of four slots in use: background work is refused at once, with Retry-After, and counted.
      const started = Date.now();
      const refused = await server.send({ background: true });
      expect(refused.status).toBe(503);
      expect(refused.retryAfter).toBe('1');
      expect(refused.body.errors[0].extensions.code).toBe('OVERLOADED');
      expect(Date.now() - started).toBeLessThan(500);
      expect(server.refusals.count).toBe(1);
      // A client's request still gets the third slot.
      const third = server.send();
      await server.until(() => server.waiting.length === 3);
      server.releaseAll();
      expect((await Promise.all([...held, third])).map((answer) => answer.status)).toEqual([200, 200, 200]);
      expect((await server.send({ background: true })).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('queues a request for at most maxQueueMs, admits it when a slot frees, else refuses it with 503 OVERLOADED', async () => {
    const server = await serve({ maxInFlight: 1, maxQueueMs: 300 });
    try {
      const first = server.send();
      await server.until(() => server.waiting.length === 1);
      const second = server.send();
      await server.until(() => server.admission.state().queued === 1);
      server.releaseAll();
      expect((await first).status).toBe(200);
      // The queued request was admitted when the first one's slot freed (and answered: released).
      expect((await second).status).toBe(200);

      server.hold();
      const holder = server.send();
      await server.until(() => server.waiting.length === 1);
      const started = Date.now();
      const refused = await server.send();
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
      expect(refused).toEqual({
        status: 503,
        retryAfter: '1',
        body: {
          errors: [{ message: 'The service is at capacity; retry shortly.', extensions: { code: 'OVERLOADED' } }],
        },
      });
      server.releaseAll();
      expect((await holder).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('shrinks the limit when answers are slower than the target and grows it back when they are fast', async () => {
    const server = await serve({
      maxInFlight: 64,
      initialInFlight: 20,
      minInFlight: 2,
      targetLatencyMs: 200,
      maxQueueMs: 0,
    });
    try {
      const slow = Array.from({ length: 20 }, () => server.send());
      await server.until(() => server.waiting.length === 20);
      await new Promise((resolve) => setTimeout(resolve, 300));
      server.releaseAll();
      await Promise.all(slow);
      // One burst of slow answers is one step down (at most one per 250 ms).
      expect(server.admission.state().limit).toBe(18);
      // Past the limit, with no queue, the excess is refused at once.
      server.hold();
      const burst = Array.from({ length: 25 }, () => server.send());
      await server.until(() => server.waiting.length + server.refusals.count === 25);
      expect([server.waiting.length, server.refusals.count]).toEqual([18, 7]);
      server.releaseAll();
      await Promise.all(burst);
      // Fast answers with the limit in use let it grow again.
      for (let round = 0; round < 3; round += 1) {
        server.hold();
        const batch = Array.from({ length: 18 }, () => server.send());
        await server.until(() => server.waiting.length === 18);
        server.releaseAll();
        await Promise.all(batch);
      }
      expect(server.admission.state().limit).toBeGreaterThan(18);
    } finally {
      await server.close();
    }
  });

  it('refuses new requests at once while its event loop lags with requests running, not after one pause', async () => {
    const server = await serve({ maxEventLoopDelayMs: 300 });
    try {
      // One pause, even a long one, is not overload.
      const running = server.send();
      await server.until(() => server.waiting.length === 1);
      let block = Date.now() + 450;
      while (Date.now() < block) {
        // Busy: the event loop cannot turn.
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      const afterPause = server.send();
      await server.until(() => server.waiting.length === 2);
      expect(server.waiting).toHaveLength(2);
      // Behind again and again, for most of a second, while requests run: saturated.
      for (let i = 0; i < 4; i += 1) {
        block = Date.now() + 150;
        while (Date.now() < block) {
          // Busy again.
        }
        await new Promise((resolve) => setTimeout(resolve, 55));
      }
      const refused = await server.send();
      expect(refused.status).toBe(503);
      expect(refused.body.errors[0].extensions.code).toBe('OVERLOADED');
      server.releaseAll();
      expect([(await running).status, (await afterPause).status]).toEqual([200, 200]);
      // With nothing running, lag alone refuses nothing (a cold start's first requests are slow, not load).
      expect((await server.send()).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});
