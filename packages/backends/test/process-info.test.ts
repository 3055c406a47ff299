import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  exitCodeForSignal, isProcessAlive, listLiveProcessGroups, parseExitStatus, parseProcStat, processGroupExists,
  readProcStat, readProcessStartTime, signalFromExitCode,
} from '@tutti/backends';

describe('parseProcStat', () => {
  it('reads state, process group and start time', () => {
    const text = '4468 (cat) R 4464 4464 2537 0 -1 4194304 101 0 0 0 0 0 0 0 20 0 1 0 63006 3133440 387 18446744073709551615 0 0';
    expect(parseProcStat(text)).toEqual({ state: 'R', processGroup: 4464, startTime: 63006 });
  });

  it('counts fields from the last parenthesis, so a command name with spaces and parentheses does not shift them', () => {
    const text = '77 (evil) S 1 2 (x) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0';
    expect(parseProcStat(text)).toEqual({ state: 'S', processGroup: 77, startTime: 123456 });
  });

  it('rejects text that is not a stat line', () => {
    expect(parseProcStat('')).toBeUndefined();
    expect(parseProcStat('12 (x) ? 1')).toBeUndefined();
  });
});

describe('readProcessStartTime and isProcessAlive', () => {
  it('know this process, and do not mistake it for one with another start time', () => {
    const start = readProcessStartTime(process.pid);
    expect(start).toBeTypeOf('number');
    expect(isProcessAlive(process.pid, start!)).toBe(true);
    expect(isProcessAlive(process.pid, start! + 1)).toBe(false);
    expect(isProcessAlive(process.pid, 0)).toBe(true);
  });

  it('say a process that has exited is gone', async () => {
    const child = spawn('/bin/sh', ['-c', 'exit 0'], { stdio: 'ignore' });
    const pid = child.pid!;
    const start = readProcessStartTime(pid) ?? 0;
    await new Promise((resolve) => child.once('exit', resolve));
    expect(isProcessAlive(pid, start)).toBe(false);
    expect(isProcessAlive(0, 0)).toBe(false);
    expect(isProcessAlive(2 ** 22 + 12345, 0)).toBe(false);
  });
});

describe('process groups', () => {
  it('know the group of this process, and that an unused id has none', () => {
    const group = readProcStat(process.pid)?.processGroup ?? 0;
    expect(processGroupExists(group)).toBe(true);
    expect(listLiveProcessGroups()?.has(group)).toBe(true);
    expect(processGroupExists(2 ** 22 + 12345)).toBe(false);
    expect(processGroupExists(1)).toBe(false);
  });
});

describe('exit statuses', () => {
  it.each([
    ['0\n', 0], ['3', 3], ['143\n', 143], ['255', 255], ['256', undefined], ['', undefined], ['x', undefined], ['-1', undefined],
  ])('parses %j as %s', (text, code) => {
    expect(parseExitStatus(text)).toBe(code);
  });

  it('maps 128+N to signal N and back', () => {
    expect(signalFromExitCode(143)).toBe('SIGTERM');
    expect(signalFromExitCode(137)).toBe('SIGKILL');
    expect(signalFromExitCode(134)).toBe('SIGABRT');
    expect(signalFromExitCode(1)).toBeUndefined();
    expect(signalFromExitCode(128)).toBeUndefined();
    expect(exitCodeForSignal('SIGKILL')).toBe(137);
    expect(exitCodeForSignal('SIGINT')).toBe(130);
  });
});
