/**
 * The size cap of rank logs, so that one chatty job cannot fill the disk the data dir (and tutti.db) lives on.
 *
 * A rank writes its stdout and stderr straight into its log file (an O_APPEND descriptor given at spawn: no pipe
 * through the server, so ranks survive a server restart). The server therefore enforces the cap from outside, each
 * time it reads the log for progress records (`ExecutionBackend.capLog`): once a log is larger than the cap, its
 * newest part is moved to the start of the file behind a marker line, and the file is cut after it:
 *
 *   [tutti: 1073741824 bytes of earlier output dropped: log cap 1 GiB]
 *   …the newest output, from the start of a line…
 *
 * The rank's O_APPEND writes go on at the new end of the file. The moved part is written over the start of the same
 * file before it is cut (never truncate-then-write), so output that arrives meanwhile is never put before older
 * output; bytes written in the microseconds between the last read and the cut are lost with the dropped part. Only
 * that last step is synchronous (a few milliseconds at most), so a trim does not hold up the event loop.
 */
import { fstatSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { LogTrim } from '../execution-backend.ts';
import { formatByteSize } from '@tutti/model';

/** The most of a log's newest output a trim keeps (half the cap for small caps): a trim copies at most this much. */
const MAX_KEPT_BYTES = 8 * 1024 * 1024;
/** How far into the kept part a trim looks for a line start. */
const LINE_START_SEARCH_BYTES = 64 * 1024;
const MARKER_RE = /^\[tutti: (\d+) bytes of earlier output dropped: log cap [^\]\n]*\]\n/;

/** The first line of a trimmed log. */
export function logCapMarker(droppedBytes: number, maxBytes: number): string {
  return `[tutti: ${droppedBytes} bytes of earlier output dropped: log cap ${formatByteSize(maxBytes)}]\n`;
}

/**
 * Trims the log at `path` to the cap when it is larger: keeps its newest output (half the cap, at most 8 MiB, from
 * the start of a line where one is near) behind a marker line. Returns what it did, or undefined when the log is
 * within the cap or missing.
 */
export async function trimLog(path: string, maxBytes: number): Promise<LogTrim | undefined> {
  const file = await open(path, 'r+').catch(() => undefined);
  if (!file) return undefined;
  try {
    const { size } = await file.stat();
    if (size <= maxBytes) return undefined;
    const start = Buffer.alloc(256);
    const { bytesRead: startBytes } = await file.read(start, 0, start.length, 0);
    const oldMarker = MARKER_RE.exec(start.subarray(0, startBytes).toString('latin1'));
    const droppedBefore = oldMarker ? Number(oldMarker[1]) : 0;
    const oldMarkerBytes = oldMarker ? Buffer.byteLength(oldMarker[0], 'latin1') : 0;

    const keep = Math.min(Math.floor(maxBytes / 2), MAX_KEPT_BYTES);
    const kept = Buffer.allocUnsafe(keep); // filled by the read (only `bytesRead` of it is used)
    const { bytesRead } = await file.read(kept, 0, keep, size - keep);
    const newline = kept.subarray(0, Math.min(bytesRead, LINE_START_SEARCH_BYTES)).indexOf(0x0a);
    const skip = newline >= 0 && newline + 1 < bytesRead ? newline + 1 : 0;
    const cutAt = size - keep + skip;

    const droppedBytes = cutAt - oldMarkerBytes;
    const totalDroppedBytes = droppedBefore + droppedBytes;
    const marker = Buffer.from(logCapMarker(totalDroppedBytes, maxBytes), 'latin1');
    // Over the start of the same file, which is being dropped: the rank appends past `size`, never here.
    const keptPart = kept.subarray(skip, bytesRead);
    await file.write(marker, 0, marker.length, 0);
    await file.write(keptPart, 0, keptPart.length, marker.length);
    const headBytes = marker.length + keptPart.length;

    // From here on synchronous, so that the rank has as little time as possible to write between the last read
    // and the cut: what it wrote since `size` is moved too, then the file is cut after it. Appends racing with this
    // land past the cut (lost) or after it, never before older output.
    const fd = file.fd;
    const since = Buffer.alloc(Math.max(0, fstatSync(fd).size - size));
    if (since.length > 0) {
      readSync(fd, since, 0, since.length, size);
      writeSync(fd, since, 0, since.length, headBytes);
    }
    const sizeAfter = headBytes + since.length;
    ftruncateSync(fd, sizeAfter);
    return { droppedBytes, totalDroppedBytes, cutAt, markerBytes: marker.length, sizeAfter };
  } finally {
    await file.close();
  }
}
