#!/bin/sh
# CLI start time per command: hyperfine runs each command against a running server, from two checkouts (each with
# `npm ci` done, so its bundle is fresh) and prints a Markdown table of wall and CPU (user + system) means.
#
#   bench/cli-start.sh BEFORE_CHECKOUT AFTER_CHECKOUT SERVER_URL JOB_ID [RUNS]
#
# e.g. git worktree add /tmp/tutti-before 6286b16 && (cd /tmp/tutti-before && npm ci); with `tutti up` on :7191 and
# one finished job (id 1): bench/cli-start.sh /tmp/tutti-before . http://127.0.0.1:7191 1
set -eu
before=$1 after=$2 server=$3 job=$4 runs=${5:-15}
out=$(mktemp -d)
i=0
for args in "--help" "ps" "ps --all" "show $job" "why $job" "logs $job" "metrics $job" "nodes" "queues" "export history"; do
  i=$((i + 1))
  hyperfine -N --warmup 2 --runs "$runs" --export-json "$out/$i.json" \
    --command-name "before|$args" "node $before/packages/cli/bin/tutti.js $args --server $server" \
    --command-name "after|$args" "node $after/packages/cli/bin/tutti.js $args --server $server" >/dev/null
done
hyperfine -N --warmup 2 --runs "$runs" --export-json "$out/node.json" --command-name "node|node -e 0" "node -e 0" >/dev/null
node -e '
const fs = require("fs"), dir = process.argv[1];
const rows = new Map();
for (const f of fs.readdirSync(dir)) for (const r of JSON.parse(fs.readFileSync(`${dir}/${f}`)).results) {
  const [which, args] = r.command.split("|");
  const row = rows.get(args) ?? {}; row[which] = r; rows.set(args, row);
}
const ms = (s) => `${Math.round(s * 1000)}`;
const cell = (r) => r ? `${ms(r.mean)} (${ms(r.median)}) / ${ms(r.user + r.system)}` : "-";
console.log("| command | before: wall mean (median) / CPU, ms | after: wall mean (median) / CPU, ms |");
console.log("|---|---|---|");
for (const [args, row] of rows) console.log(`| \`${args === "node -e 0" ? args : `tutti ${args}`}\` | ${cell(row.before ?? row.node)} | ${cell(row.after ?? row.node)} |`);
' "$out"
rm -rf "$out"
