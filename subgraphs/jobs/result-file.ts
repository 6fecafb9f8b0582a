import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A bulk query's result as it is written: `<id>.jsonl.part` until the last page, then renamed to `<id>.jsonl`.
 * Each page is written at the byte offset the jobs table has committed, and made durable, before the new
 * offset is committed: a worker that dies at any point leaves a file whose first `file_size` bytes are exactly
 * the committed pages, and the next run cuts it there and goes on from the committed cursor. (Appending instead
 * of writing at the offset duplicated a page after a crash between the write and the commit.)
 */
export const resultFile = (dir: string, jobId: string) => join(dir, `${jobId}.jsonl`);
const partFile = (dir: string, jobId: string) => `${resultFile(dir, jobId)}.part`;

/** The size of the published result, or null when there is none. */
export async function publishedSize(dir: string, jobId: string): Promise<number | null> {
  try {
    return (await stat(resultFile(dir, jobId))).size;
  } catch {
    return null;
  }
}

export class PartFile {
  private constructor(
    private readonly dir: string,
    private readonly jobId: string,
    private readonly handle: FileHandle,
    /** Bytes committed so far: where the next page is written. */
    public size: number,
  ) {}

  /** Opens the part file cut to `committed` bytes (created when the job starts); throws if it holds fewer. */
  static async open(dir: string, jobId: string, committed: number): Promise<PartFile> {
    await mkdir(dir, { recursive: true });
    const path = partFile(dir, jobId);
    const handle = await open(path, committed === 0 ? 'w+' : 'r+').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') throw new Error(`The partial result of job ${jobId} is gone (${path})`);
      throw error;
    });
    const { size } = await handle.stat();
    if (size < committed) {
      await handle.close();
      throw new Error(`The partial result of job ${jobId} holds ${size} bytes, fewer than the ${committed} committed`);
    }
    await handle.truncate(committed);
    return new PartFile(dir, jobId, handle, committed);
  }

  /** Writes one page's lines at the committed offset and makes them durable; returns the new size (not yet committed). */
  async write(lines: string): Promise<number> {
    const bytes = Buffer.from(lines);
    await this.handle.write(bytes, 0, bytes.length, this.size);
    await this.handle.datasync();
    return this.size + bytes.length;
  }

  /** The new size was committed. */
  committed(size: number): void {
    this.size = size;
  }

  /** Publishes the result atomically: `<id>.jsonl` appears whole or not at all. */
  async publish(): Promise<void> {
    await this.handle.truncate(this.size);
    await this.handle.sync();
    await this.handle.close();
    await rename(partFile(this.dir, this.jobId), resultFile(this.dir, this.jobId));
    // The rename is durable once the folder is.
    const folder = await open(this.dir, 'r');
    await folder.sync().finally(() => folder.close());
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/** Removes what a job wrote (canceled or failed: its partial result is never served). */
export async function discardResult(dir: string, jobId: string): Promise<void> {
  await unlink(partFile(dir, jobId)).catch(() => undefined);
}

/** Removes a published result (a job canceled while its last page was being published). */
export async function removeResult(dir: string, jobId: string): Promise<void> {
  await unlink(resultFile(dir, jobId)).catch(() => undefined);
}
