/**
 * The HTTP level every server shares (lib/http-server.ts), against a real server on a tiny schema: a request
 * holds an `afterBody` slot only once its body is read; bodies are bounded in size and time; slow headers
 * and idle connections are closed; every refusal is JSON with a code.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import type { RequestHandler } from 'express';
import pino from 'pino';
import { startGraphQLHttpServer, type GraphQLHttpServerOptions, type RunningServer } from './http-server';
import type { RequestWithBody } from './request-body';

// Everything here runs on 127.0.0.1; nothing may call out to Apollo's telemetry.
process.env.APOLLO_TELEMETRY_DISABLED = '1';

const LIMIT = 100 * 1024;

/** An `afterBody` middleware counting the requests that hold a slot, and keeping each one's raw body. */
function slots() {
  const counter = { holding: 0, most: 0, entered: 0, rawBodies: [] as (Uint8Array | undefined)[] };
  const middleware: RequestHandler = (req: RequestWithBody, res, next) => {
    counter.entered += 1;
    counter.holding += 1;
    counter.most = Math.max(counter.most, counter.holding);
    counter.rawBodies.push(req.rawBody);
    res.once('close', () => (counter.holding -= 1));
    next();
  };
  return { counter, middleware };
}

type Options = Partial<Omit<GraphQLHttpServerOptions<object>, 'apollo' | 'context' | 'ready' | 'logger'>>;

const running: RunningServer[] = [];
const sockets: net.Socket[] = [];

async function start(options: Options = {}) {
  const held = slots();
  const server = await startGraphQLHttpServer<object>({
    apollo: {
      typeDefs: 'type Query { echo(text: String!): String! }',
      resolvers: { Query: { echo: (_: unknown, { text }: { text: string }) => text } },
    },
    context: async () => ({}),
    ready: async () => true,
    logger: pino({ level: 'silent' }),
    afterBody: [held.middleware],
    ...options,
  });
  running.push(server);
  return { server, counter: held.counter };
}

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(running.splice(0).map((server) => server.stop()));
});

/** A raw connection: what the client has sent, everything it has received, and when it was closed. */
interface Raw {
  socket: net.Socket;
  sent: number;
  received: () => string;
  /** Bytes sent when the first byte of the answer arrived. */
  sentAtAnswer: number | undefined;
  /** Resolves with the time the server closed the connection (or reset it). */
  closed: Promise<number>;
  /** Resolves once an answer (its status line and headers) has arrived. */
  answered: Promise<void>;
  send(data: string | Buffer): void;
}

async function connect(port: number): Promise<Raw> {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  let answered!: () => void;
  const raw: Raw = {
    socket,
    sent: 0,
    received: () => text,
    sentAtAnswer: undefined,
    closed: new Promise((resolve) => socket.once('close', () => resolve(Date.now()))),
    answered: new Promise((resolve) => (answered = resolve)),
    send(data) {
      raw.sent += Buffer.byteLength(data);
      socket.write(data);
    },
  };
  socket.on('data', (chunk: Buffer) => {
    raw.sentAtAnswer ??= raw.sent;
    text += chunk.toString('latin1');
    if (text.includes('\r\n\r\n')) answered();
  });
  // A write after the server closed may be reset: what was received stays readable above.
  socket.on('error', () => {});
  return raw;
}

/** The status, headers and JSON body of the one answer in `text`. */
function parseAnswer(text: string) {
  const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)];
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine!.split(' ')[1]), headers, json: body ? JSON.parse(body) : undefined };
}

const head = (headers: Record<string, string | number>) =>
  `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}\r\n`;

async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: response.status, json: (await response.json()) as any };
}

const ECHO = (text: string) =>
  JSON.stringify({ query: 'query ($text: String!) { echo(text: $text) }', variables: { text } });

describe('the request body', () => {
  it('takes no slot while it trickles in: other clients are served, and the stalled ones get 408 at the deadline and are closed', async () => {
    const { server, counter } = await start({ bodyTimeoutMs: 1_500 });
    const began = Date.now();
    const stalled = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const raw = await connect(server.port);
        raw.send(head({ 'content-type': 'application/json', 'content-length': 1000 }));
        raw.send('{"query":"');
        return raw;
      }),
    );
    await sleep(200);
    expect(counter.holding).toBe(0);
    for (let i = 0; i < 5; i += 1) {
      const { status, json } = await post(server.url, ECHO(`hello ${i}`));
      expect([status, json]).toEqual([200, { data: { echo: `hello ${i}` } }]);
    }
    // Only the normal client's requests ever held a slot, one at a time.
    expect([counter.holding, counter.most, counter.entered]).toEqual([0, 1, 5]);

    const closedAt = await Promise.all(stalled.map((raw) => raw.closed));
    for (const [i, raw] of stalled.entries()) {
      const answer = parseAnswer(raw.received());
      expect(answer.status).toBe(408);
      expect(answer.headers.connection).toBe('close');
      expect(answer.json.errors[0].extensions).toEqual({ code: 'REQUEST_TIMEOUT' });
      expect(closedAt[i]! - began).toBeGreaterThanOrEqual(1_400);
    }
    expect(Math.max(...closedAt) - began).toBeLessThan(4_000);
    expect(counter.entered).toBe(5);
  });

  it('is refused with 413 at once when its Content-Length is over the limit, before it is sent', async () => {
    const { server, counter } = await start();
    const raw = await connect(server.port);
    raw.send(head({ 'content-type': 'application/json', 'content-length': 50 * 1024 * 1024 }));
    await raw.closed;
    const answer = parseAnswer(raw.received());
    expect(answer.status).toBe(413);
    expect(answer.headers.connection).toBe('close');
    expect(answer.json.errors).toEqual([
      { message: 'Request body too large.', extensions: { code: 'PAYLOAD_TOO_LARGE' } },
    ]);
    expect(raw.sent).toBeLessThan(200);
    expect(counter.entered).toBe(0);
  });

  it('is refused with 413 before "100 Continue" when its declared length is over the limit, and continued otherwise', async () => {
    const { server } = await start();
    const big = await connect(server.port);
    big.send(head({ 'content-type': 'application/json', 'content-length': LIMIT + 1, expect: '100-continue' }));
    await big.closed;
    expect(big.received()).toMatch(/^HTTP\/1\.1 413 /);
    expect(big.received()).not.toContain('100 Continue');

    const body = ECHO('continued');
    const small = await connect(server.port);
    small.send(
      head({ 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' }),
    );
    await small.answered;
    expect(small.received()).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    small.send(body);
    await sleep(100);
    expect(small.received()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  });

  it('is cut off with 413 as soon as a chunked body passes the limit, while the client is still sending', async () => {
    const { server, counter } = await start();
    const raw = await connect(server.port);
    raw.send(head({ 'content-type': 'application/json', 'transfer-encoding': 'chunked' }));
    const chunk = 'x'.repeat(8 * 1024);
    let answered = false;
    void raw.answered.then(() => (answered = true));
    raw.send(`${(1).toString(16)}\r\n[\r\n`);
    // Never ends: a chunk every 10 ms, until the answer arrives (or far past the limit).
    while (!answered && raw.sent < 4 * LIMIT) {
      raw.send(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      await sleep(10);
    }
    expect(answered).toBe(true);
    // The answer came within a few chunks of the limit.
    expect(raw.sentAtAnswer).toBeGreaterThan(LIMIT);
    expect(raw.sentAtAnswer).toBeLessThan(LIMIT + 4 * chunk.length);
    await raw.closed;
    const answer = parseAnswer(raw.received());
    expect([answer.status, answer.headers.connection]).toEqual([413, 'close']);
    expect(answer.json.errors[0].extensions).toEqual({ code: 'PAYLOAD_TOO_LARGE' });
    expect(counter.entered).toBe(0);
  });

  it('is cut off with 413 when it passes the limit once decompressed', async () => {
    const { server, counter } = await start();
    const bomb = gzipSync(ECHO('x'.repeat(2 * LIMIT)));
    expect(bomb.length).toBeLessThan(LIMIT);
    const { status, json } = await post(server.url, bomb, { 'content-encoding': 'gzip' });
    expect([status, json.errors[0].extensions]).toEqual([413, { code: 'PAYLOAD_TOO_LARGE' }]);
    expect(counter.entered).toBe(0);
  });

  it('is parsed as JSON, kept byte for byte as rawBody, and refused with 400 BAD_REQUEST when malformed', async () => {
    const { server, counter } = await start();
    const body = Buffer.from(
      `  {"query" : "query ($text: String!) { echo(text: $text) }",\n "variables": {"text": "thé \\u00e9"}}`,
    );
    const { status, json } = await post(server.url, body);
    expect([status, json]).toEqual([200, { data: { echo: 'thé é' } }]);
    expect(Buffer.from(counter.rawBodies[0]!).equals(body)).toBe(true);

    const gzipped = await post(server.url, gzipSync(body), { 'content-encoding': 'gzip' });
    expect([gzipped.status, gzipped.json]).toEqual([200, { data: { echo: 'thé é' } }]);
    expect(Buffer.from(counter.rawBodies[1]!).equals(body)).toBe(true);

    for (const malformed of ['{"query": ', '"a string"', 'nope']) {
      const refused = await post(server.url, malformed);
      expect([refused.status, refused.json]).toEqual([
        400,
        { errors: [{ message: 'Malformed request body.', extensions: { code: 'BAD_REQUEST' } }] },
      ]);
    }
    const charset = await post(server.url, body, { 'content-type': 'application/json; charset=latin1' });
    expect([charset.status, charset.json.errors[0].extensions]).toEqual([415, { code: 'BAD_REQUEST' }]);
    expect(counter.entered).toBe(2);

    // A GET carries its operation in the URL: no body to read.
    const get = await fetch(`${server.url}?query=${encodeURIComponent('{ echo(text: "get") }')}`, {
      headers: { 'apollo-require-preflight': 'true' },
    });
    expect([get.status, await get.json()]).toEqual([200, { data: { echo: 'get' } }]);
  });

  it('keeps the connection open after a body read whole, even a refused one', async () => {
    const { server } = await start();
    const raw = await connect(server.port);
    raw.send(`${head({ 'content-type': 'application/json', 'content-length': 4 })}nope`);
    await raw.answered;
    await sleep(50);
    const body = ECHO('again');
    raw.send(`${head({ 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })}${body}`);
    await sleep(100);
    const text = raw.received();
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('HTTP/1.1 200 ');
    expect(text).toContain('{"data":{"echo":"again"}}');
    expect(raw.socket.destroyed).toBe(false);
  });
});

describe('the connection', () => {
  it('is closed with 408 when its headers arrive too slowly', async () => {
    const { server, counter } = await start({ headersTimeoutMs: 500 });
    const raw = await connect(server.port);
    const began = Date.now();
    const headers = head({ 'content-type': 'application/json', 'content-length': 2 });
    void (async () => {
      for (const byte of headers) {
        if (raw.socket.destroyed) return;
        raw.send(byte);
        await sleep(50);
      }
    })();
    const closedAt = await raw.closed;
    expect(closedAt - began).toBeGreaterThanOrEqual(450);
    expect(closedAt - began).toBeLessThan(1_500);
    expect(raw.sent).toBeLessThan(headers.length);
    const answer = parseAnswer(raw.received());
    expect([answer.status, answer.headers.connection]).toEqual([408, 'close']);
    expect(answer.json.errors[0].extensions).toEqual({ code: 'REQUEST_TIMEOUT' });
    expect(counter.entered).toBe(0);
  });

  it('is closed when idle past the keep-alive timeout', async () => {
    const { server } = await start({ keepAliveTimeoutMs: 200 });
    const raw = await connect(server.port);
    const body = ECHO('idle');
    raw.send(`${head({ 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })}${body}`);
    await raw.answered;
    const answeredAt = Date.now();
    // Node adds a second to the advertised timeout before it closes.
    expect((await raw.closed) - answeredAt).toBeLessThan(2_500);
  });

  it('answers malformed HTTP with JSON', async () => {
    const { server } = await start();
    const raw = await connect(server.port);
    raw.send('NOT HTTP\r\n\r\n');
    await raw.closed;
    const answer = parseAnswer(raw.received());
    expect([answer.status, answer.json.errors[0].extensions]).toEqual([400, { code: 'BAD_REQUEST' }]);
  });

  it('refuses timeouts that would not bound the body', async () => {
    await expect(start({ bodyTimeoutMs: 5_000, requestTimeoutMs: 5_000 })).rejects.toThrow(/requestTimeoutMs/);
  });
});

describe('stop()', () => {
  it('closes idle connections and waits for a request still sending its body to be answered', async () => {
    const { server } = await start({ bodyTimeoutMs: 800 });
    const idle = await connect(server.port);
    const sending = await connect(server.port);
    sending.send(head({ 'content-type': 'application/json', 'content-length': 1000 }));
    sending.send('{"query":');
    await sleep(100);
    const began = Date.now();
    await server.stop();
    running.splice(running.indexOf(server), 1);
    expect(Date.now() - began).toBeLessThan(3_000);
    await idle.closed;
    await sending.closed;
    expect(parseAnswer(sending.received()).status).toBe(408);
  });
});
