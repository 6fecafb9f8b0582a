import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { MIMEType, TextDecoder } from 'node:util';
import zlib from 'node:zlib';
import type { Request, RequestHandler } from 'express';
import getRawBody from 'raw-body';

export interface ReadBodyOptions {
  /** Largest body accepted, in bytes: as sent, and once decompressed. */
  limit: number;
  /** How long the whole body may take to arrive, counted from when reading starts. */
  timeoutMs: number;
}

/** A request whose body was read: `rawBody` is the JSON body's bytes as parsed (decompressed, not decoded). */
export type RequestWithBody = Request & { rawBody?: Uint8Array };

/** Why a body was refused; `status` is the HTTP status the error handler answers with. */
export class RequestBodyError extends Error {
  constructor(
    readonly status: 400 | 408 | 413 | 415,
    message: string,
    /** As body-parser's: entity.too.large, entity.parse.failed, charset.unsupported… and request.timeout. */
    readonly type: string,
  ) {
    super(message);
    this.name = 'RequestBodyError';
  }
}

const tooLarge = () => new RequestBodyError(413, 'Request body too large.', 'entity.too.large');

const UNITS: Record<string, number> = { b: 1, kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30 };

/** A size as body-parser reads its `limit`: a number of bytes, or "100kb", "1mb"… (binary units). */
export function parseSize(size: string | number): number {
  if (typeof size === 'number') return size;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(size);
  if (!match) throw new Error(`Invalid size "${size}": give bytes, or a number with b, kb, mb or gb.`);
  return Math.floor(Number(match[1]) * UNITS[(match[2] ?? 'b').toLowerCase()]!);
}

/** type-is's hasBody: a request has a body when it is chunked or declares a length (even 0). */
const hasBody = (req: IncomingMessage) =>
  req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;

function decompressor(encoding: string): Duplex {
  switch (encoding) {
    case 'gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    case 'zstd':
      return zlib.createZstdDecompress();
    default:
      throw new RequestBodyError(415, `Unsupported content encoding "${encoding}".`, 'encoding.unsupported');
  }
}

/** The decoder of a JSON body, as body-parser accepts it: UTF-8 unless the type names another UTF-*. */
function decoderOf(req: IncomingMessage): TextDecoder {
  let charset: string | undefined;
  try {
    charset = new MIMEType(req.headers['content-type'] ?? '').params.get('charset')?.toLowerCase();
  } catch {
    throw new RequestBodyError(400, 'Malformed Content-Type.', 'content-type.invalid');
  }
  const unsupported = () => new RequestBodyError(415, `Unsupported charset "${charset}".`, 'charset.unsupported');
  if (charset !== undefined && !charset.startsWith('utf-')) throw unsupported();
  try {
    return new TextDecoder(charset ?? 'utf-8');
  } catch {
    throw unsupported();
  }
}

/** body-parser's strict JSON: an object or an array; an empty body is {}. */
function parseJson(text: string): unknown {
  if (text.length === 0) return {};
  const first = /^[ \t\n\r]*(.?)/.exec(text)![1];
  if (first !== '{' && first !== '[')
    throw new RequestBodyError(400, 'A JSON body must be an object or an array.', 'entity.parse.failed');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RequestBodyError(400, (error as Error).message, 'entity.parse.failed');
  }
}

/** Responses to `Expect: 100-continue` requests not yet told to continue (see continueWhenReading). */
const awaitingContinue = new WeakSet<ServerResponse>();

/**
 * Takes over `Expect: 100-continue` on `server`: such a request is handled like any other (a 'request'
 * event, which Apollo's drain plugin counts too) but without Node's automatic "100 Continue": readBody
 * sends it when it starts reading, so a request refused before (rate limits, a declared length over the
 * limit) is refused before its body is sent. Node closes such a connection after a refusal.
 */
export function continueWhenReading(server: Server): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.add(res);
    server.emit('request', req, res);
  });
}

/**
 * Reads the request body, before anything that should only see complete requests (the in-flight cap).
 * Parses as express.json() does (application/json only, strict, UTF-*, gzip, deflate, br or zstd;
 * `req.body` stays undefined for other types, whose bodies are read and dropped) and keeps the JSON
 * body's bytes in `req.rawBody`, but bounded in size and time, with raw-body (body-parser's reader):
 * - a `Content-Length` over the limit is refused (413) before a byte is read;
 * - a body that passes the limit (chunked, or once decompressed) is refused (413) at that moment;
 * - a body still incomplete `timeoutMs` after reading began is refused (408).
 * A request refused before its body was read whole is answered with `Connection: close`: the client
 * stops sending, and the server closes the connection instead of draining the rest.
 */
export function readBody(options: ReadBodyOptions): RequestHandler {
  const { limit, timeoutMs } = options;
  return (req: RequestWithBody, res, next) => {
    // As express.json(): Apollo's middleware wants the property, even undefined.
    if (!Reflect.has(req, 'body')) req.body = undefined;
    if (!hasBody(req) || req.readableEnded) return next();
    let settled = false;
    let decompressing: Duplex | undefined;
    const finish = (error?: RequestBodyError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      res.off('close', abandoned);
      if (decompressing) {
        req.unpipe(decompressing);
        decompressing.on('error', () => {}).destroy();
      }
      if (error && !req.complete) res.setHeader('Connection', 'close');
      next(error);
    };
    // The client went away: nobody is left to answer.
    const abandoned = () => {
      settled = true;
      clearTimeout(timer);
    };
    const timer = setTimeout(
      () => finish(new RequestBodyError(408, 'The request body did not arrive in time.', 'request.timeout')),
      timeoutMs,
    );
    res.once('close', abandoned);

    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) return finish(tooLarge());
    const json = Boolean(req.is('application/json'));
    let decoder: TextDecoder | undefined;
    try {
      const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
      if (json) decoder = decoderOf(req);
      if (json && encoding !== 'identity') {
        decompressing = decompressor(encoding);
        // The limit holds for the bytes sent too: a compressed stream can run on without producing any.
        let sent = 0;
        req.on('data', (chunk: Buffer) => {
          sent += chunk.length;
          if (sent > limit) finish(tooLarge());
        });
        req.pipe(decompressing);
      }
    } catch (error) {
      return finish(error as RequestBodyError);
    }
    if (awaitingContinue.delete(res)) res.writeContinue();

    getRawBody(decompressing ?? req, { limit, length: decompressing ? undefined : declared }, (error, body) => {
      if (settled) return;
      if (error)
        return finish(
          error.status === 413
            ? tooLarge()
            : new RequestBodyError(400, error.message, error.type ?? 'entity.read.failed'),
        );
      // Whatever follows the end of a compressed stream is read and dropped, as body-parser does.
      if (decompressing) req.resume();
      if (!decoder) return finish();
      try {
        req.rawBody = body;
        req.body = parseJson(decoder.decode(body));
      } catch (parseError) {
        return finish(parseError as RequestBodyError);
      }
      finish();
    });
  };
}
