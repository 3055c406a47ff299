/**
 * The sh lines that run a rank's command and record how it ended, shared by every backend that starts ranks through
 * a shell (the local backend's supervisor, the Slurm rank shim). Why each line is as it is: see
 * `RANK_SUPERVISOR_SCRIPT` (local/rank-files.ts). The caller sets `exit_file` first.
 */

/** A no-op handler (not an ignore, which the command would inherit): a stop signal reaches the command, not the shell. */
export const TRAP_STOP_SIGNALS = "trap ':' HUP INT QUIT TERM USR1 USR2 ALRM";

/** Runs `"$@"` in the foreground, then writes its status (0…255, 128+N for signal N) to `$exit_file` whole, and exits with it. */
export const RUN_AND_RECORD_EXIT = [
  '( "$@" )',
  'code=$?',
  "trap '' HUP INT QUIT TERM USR1 USR2 ALRM",
  'PATH=/usr/bin:/bin',
  'umask 077',
  'echo "$code" > "$exit_file.tmp" && mv -f "$exit_file.tmp" "$exit_file"',
  'exit "$code"',
] as const;
