import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import express, { type Express, type Request, type Response } from 'express';
import { request } from 'undici';
import { ErrorCode } from '../lib/errors';
import { isUuid } from '../lib/ids';
import type { ResultLinks } from '../lib/result-links';
import type { Credentials } from './credentials';

/**
 * The jobs' HTTP side, for clients that are not GraphQL clients (the 202 bridge) and for downloads:
 *
 * - `POST /jobs/bulk-query` `{ "query": "…" }` (an `Idempotency-Key` header or `idempotencyKey` field optional):
 *   202 Accepted, `Location: /jobs/<id>`, `Retry-After`; 422 with the userErrors when the query is refused.
 * - `GET /jobs/<id>`: the job as JSON, with its result link once COMPLETED (404 when it is not the caller's).
 * - `GET /jobs/<id>/result`: the result, `application/jsonl`, to its owner's token or to a signed link.
 *
 * Each runs as a GraphQL operation on this gateway's own /graphql, with the request's credentials: the same jobs
 * as the GraphQL API and the same rules (access, cost, budget, admission), in one place.
 */
export interface JobsRoutesOptions {
  /** Where results are (JOBS_DIR): the folder the workers write to. */
  dir: string;
  links: ResultLinks;
  /** The request's verified credentials (the gateway's own check): anonymous and invalid ones get a 401 here. */
  credentialsOf(req: Request, res: Response): Promise<Credentials>;
}

const JOB_FIELDS = 'id kind status createdAt startedAt finishedAt objectCount pageCount fileSize url errorCode';
/** Polling sooner than this gains nothing: a page takes about as long. */
const RETRY_AFTER_SECONDS = 2;

interface GraphQLAnswer {
  status: number;
  body: { data?: Record<string, unknown> | null; errors?: Array<{ message: string; extensions?: { code?: string } }> };
}

/** Runs an operation on this gateway's /graphql as the request's caller. */
async function graphql(req: Request, query: string, variables: Record<string, unknown>): Promise<GraphQLAnswer> {
  const { localAddress, localPort } = req.socket;
  const host = localAddress?.includes(':') ? `[${localAddress}]` : localAddress;
  const response = await request(`http://${host}:${localPort}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(req.headers.authorization && { authorization: req.headers.authorization }),
      ...(typeof req.headers['x-api-key'] === 'string' && { 'x-api-key': req.headers['x-api-key'] }),
    },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.statusCode, body: (await response.body.json()) as GraphQLAnswer['body'] };
}

const problem = (res: Response, status: number, code: string, message: string) =>
  res.status(status).json({ errors: [{ message, extensions: { code } }] });

/** Forwards a GraphQL refusal (401, 429, 503…) as it came. */
const forward = (res: Response, answer: GraphQLAnswer) =>
  res.status(answer.status >= 400 ? answer.status : 500).json({ errors: answer.body.errors });

export function jobsRoutes(options: JobsRoutesOptions) {
  const signedIn = async (req: Request, res: Response): Promise<boolean> => {
    const { caller, error } = await options.credentialsOf(req, res);
    if (!error && caller.callerId) return true;
    problem(res, 401, ErrorCode.UNAUTHENTICATED, 'Send a bearer token: jobs belong to a signed-in caller.');
    return false;
  };
  const readJob = async (req: Request, id: string) =>
    graphql(req, `query Job($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`, { id });

  return (app: Express) => {
    app.post('/jobs/bulk-query', express.json({ limit: '100kb' }), async (req, res, next) => {
      try {
        if (!(await signedIn(req, res))) return;
        const { query } = (req.body ?? {}) as { query?: unknown };
        const idempotencyKey = req.get('idempotency-key') ?? (req.body as { idempotencyKey?: unknown }).idempotencyKey;
        if (typeof query !== 'string' || (idempotencyKey !== undefined && typeof idempotencyKey !== 'string'))
          return void problem(
            res,
            400,
            ErrorCode.BAD_REQUEST,
            'Send {"query": "<GraphQL query>"} as application/json.',
          );
        const answer = await graphql(
          req,
          `mutation RunBulkQuery($query: String!, $idempotencyKey: String) {
            runBulkQuery(query: $query, idempotencyKey: $idempotencyKey) { job { ${JOB_FIELDS} } userErrors { code message } }
          }`,
          { query, idempotencyKey },
        );
        const payload = answer.body.data?.runBulkQuery as
          { job: { id: string } | null; userErrors: Array<{ code: string; message: string }> } | undefined;
        if (!payload) return void forward(res, answer);
        if (!payload.job) return void res.status(422).json({ userErrors: payload.userErrors });
        res
          .status(202)
          .location(`/jobs/${payload.job.id}`)
          .set('retry-after', String(RETRY_AFTER_SECONDS))
          .json(payload.job);
      } catch (error) {
        next(error);
      }
    });

    app.get('/jobs/:id', async (req, res, next) => {
      try {
        if (!(await signedIn(req, res))) return;
        const answer = await readJob(req, req.params.id);
        if (!answer.body.data) return void forward(res, answer);
        const job = answer.body.data.job as { status: string } | null;
        if (!job) return void problem(res, 404, ErrorCode.NOT_FOUND, 'You have no job with this id.');
        if (job.status === 'QUEUED' || job.status === 'RUNNING') res.set('retry-after', String(RETRY_AFTER_SECONDS));
        res.set('cache-control', 'no-store').json(job);
      } catch (error) {
        next(error);
      }
    });

    app.get('/jobs/:id/result', async (req, res, next) => {
      try {
        const id = req.params.id.toLowerCase();
        if (!isUuid(id)) return void problem(res, 404, ErrorCode.NOT_FOUND, 'No such result.');
        const { expires, signature } = req.query;
        if (expires !== undefined || signature !== undefined) {
          if (!options.links.verify(id, expires, signature))
            return void problem(res, 403, ErrorCode.FORBIDDEN, 'The link is not valid, or it has expired.');
        } else {
          if (!(await signedIn(req, res))) return;
          const answer = await readJob(req, id);
          if (!answer.body.data) return void forward(res, answer);
          if ((answer.body.data.job as { status: string } | null)?.status !== 'COMPLETED')
            return void problem(res, 404, ErrorCode.NOT_FOUND, 'You have no completed job with this id.');
        }
        const path = join(options.dir, `${id}.jsonl`);
        const size = await stat(path).then(
          (found) => found.size,
          () => null,
        );
        if (size === null) return void problem(res, 404, ErrorCode.NOT_FOUND, 'No such result.');
        res.status(200).set({
          'content-type': 'application/jsonl',
          'content-length': String(size),
          'content-disposition': `attachment; filename="${id}.jsonl"`,
          // Per caller (or per link): never kept by a shared cache.
          'cache-control': 'private, no-store',
        });
        createReadStream(path).on('error', next).pipe(res);
      } catch (error) {
        next(error);
      }
    });
  };
}
