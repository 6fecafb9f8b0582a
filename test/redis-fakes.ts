import net, { type AddressInfo } from 'node:net';

/**
 * Misbehaving Redis servers for the tests of the guarded connection (lib/redis.ts) and its users:
 * one that never answers, and a proxy to a real Redis that can hang and resume.
 */

export interface FakeRedis {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Listens on `port` (0: any free one) and hands each connection to `handle`; close() drops them all. */
async function listen(port: number, handle: (socket: net.Socket) => void): Promise<FakeRedis> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    handle(socket);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${bound}`,
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A "Redis" that accepts TCP connections and never answers anything (not even the client's handshake). */
export function silentRedis(port = 0): Promise<FakeRedis> {
  return listen(port, (socket) => socket.resume());
}

export interface PausableRedis extends FakeRedis {
  /** Stops passing bytes either way: connections stay open and nothing answers, as with a hung Redis. */
  hang(): void;
  /** Passes on what was held back, in order (as a Redis resumed after SIGSTOP would), and what follows. */
  resume(): void;
}

/** A TCP proxy to a real Redis (at 127.0.0.1:`targetPort`) that can hang and resume. */
export async function pausableRedis(targetPort = 6379, port = 0): Promise<PausableRedis> {
  let hung = false;
  // Held writes in arrival order: dropping them would desynchronise the client's replies.
  const held: Array<() => void> = [];
  const relay = (from: net.Socket, to: net.Socket) =>
    from.on('data', (chunk: Buffer) => {
      if (hung) held.push(() => to.write(chunk));
      else to.write(chunk);
    });
  const upstreams = new Set<net.Socket>();
  const fake = await listen(port, (downstream) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    upstreams.add(upstream);
    upstream.on('error', () => downstream.destroy());
    upstream.on('close', () => {
      upstreams.delete(upstream);
      downstream.destroy();
    });
    downstream.on('close', () => upstream.destroy());
    relay(downstream, upstream);
    relay(upstream, downstream);
  });
  return {
    ...fake,
    hang: () => {
      hung = true;
    },
    resume: () => {
      hung = false;
      for (const write of held.splice(0)) write();
    },
    close: async () => {
      for (const upstream of upstreams) upstream.destroy();
      await fake.close();
    },
  };
}
