#!/usr/bin/env node
// Data-parallel logistic regression with no ML framework: every rank computes the gradient of its shard, rank 0
// averages them (a parameter server over TCP at MASTER_ADDR:MASTER_PORT) and sends the new weights back.
// Deterministic: the data come from a seeded generator, each step's batch from the step number, and gradients are
// summed in rank order in float64, so a run that is interrupted and resumed from a checkpoint ends with exactly the
// same weights as one that never stopped. Checkpoints every CHECKPOINT_EVERY steps into TUTTI_CHECKPOINT_DIR
// (write + rename), resumes from TUTTI_RESUME_FROM, prints progress records {"tutti": {...}}, and on its stop signal
// rank 0 checkpoints before exiting. The last line of every rank's log is the digest of the final weights.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const env = process.env;
const rank = Number(env.RANK ?? 0);
const worldSize = Number(env.WORLD_SIZE ?? 1);
const masterAddr = env.MASTER_ADDR ?? '127.0.0.1';
const masterPort = Number(env.MASTER_PORT ?? 29500);
const steps = Number(env.STEPS ?? 300);
const stepMs = Number(env.STEP_MS ?? 10);
const checkpointEvery = Number(env.CHECKPOINT_EVERY ?? 25);
const batch = Number(env.BATCH ?? 32);
const lr = Number(env.LR ?? 0.5);
const features = 16;
const samples = 4096;
const checkpointDir = env.TUTTI_CHECKPOINT_DIR ?? path.resolve('checkpoints');
const stopSignal = env.TUTTI_STOP_SIGNAL ?? 'SIGTERM';
const log = (message) => console.log(`[rank ${rank}] ${message}`);

// ---- data: the same on every rank, every attempt -------------------------------------------------------------
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = mulberry32(Number(env.SEED ?? 1));
const truth = Array.from({ length: features }, () => random() * 4 - 2);
const X = [];
const Y = [];
for (let i = 0; i < samples; i++) {
  const x = Array.from({ length: features }, () => random() * 2 - 1);
  X.push(x);
  Y.push(random() < sigmoid(dot(x, truth)) ? 1 : 0);
}
// Rank r's shard: the samples i with i % worldSize === r.
const shard = [];
for (let i = rank; i < samples; i += worldSize) shard.push(i);

function sigmoid(z) {
  return 1 / (1 + Math.exp(-z));
}
function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
/** Gradient and loss of this rank's batch for `step` at weights `w`. */
function gradient(w, step) {
  const grad = new Array(features).fill(0);
  let loss = 0;
  for (let k = 0; k < batch; k++) {
    const i = shard[(step * batch + k) % shard.length];
    const p = sigmoid(dot(X[i], w));
    const e = p - Y[i];
    for (let j = 0; j < features; j++) grad[j] += (e * X[i][j]) / batch;
    loss += -(Y[i] * Math.log(p + 1e-12) + (1 - Y[i]) * Math.log(1 - p + 1e-12)) / batch;
  }
  return { grad, loss };
}
const digest = (w) => createHash('sha256').update(JSON.stringify(w)).digest('hex').slice(0, 16);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- newline-delimited JSON over TCP -------------------------------------------------------------------------
function lines(socket, onMessage) {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk) => {
    buffered += chunk;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line) onMessage(JSON.parse(line));
    }
  });
}
const send = (socket, message) => socket.write(`${JSON.stringify(message)}\n`);

// ---- rank 0: parameter server + worker -----------------------------------------------------------------------
async function runRankZero() {
  let step = 0;
  let w = new Array(features).fill(0);
  const resume = env.TUTTI_RESUME_FROM;
  if (resume) {
    const saved = JSON.parse(readFileSync(resume, 'utf8'));
    step = saved.step;
    w = saved.w;
    log(`resuming from ${resume} at step ${step}`);
  }
  mkdirSync(checkpointDir, { recursive: true });
  const checkpoint = (why) => {
    const file = path.join(checkpointDir, `step-${String(step).padStart(6, '0')}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify({ step, w }));
    renameSync(`${file}.tmp`, file);
    console.log(JSON.stringify({ tutti: { step, checkpoint: file } }));
    log(`checkpoint ${file} (${why})`);
  };
  let finished = false;
  process.on(stopSignal, () => {
    let deadline = '';
    try {
      deadline = ` (deadline ${readFileSync(path.join(env.TUTTI_CONTROL_DIR ?? '.', 'preempt-deadline'), 'utf8').trim()}, now ${Math.floor(Date.now() / 1000)})`;
    } catch {
      // no control dir outside tutti
    }
    log(`received ${stopSignal}${deadline}: checkpointing step ${step} before exiting`);
    checkpoint(`stop signal ${stopSignal}`);
    process.exit(0);
  });

  const workers = new Map();
  const pending = new Map();
  let wake;
  if (worldSize > 1) {
    const server = net.createServer((socket) => {
      let peer;
      lines(socket, (message) => {
        if (message.hello !== undefined) {
          peer = message.hello;
          workers.set(peer, socket);
          wake?.();
        } else {
          pending.set(message.rank, message);
          wake?.();
        }
      });
      socket.on('close', () => {
        if (finished) return;
        // A stop signal reaches every rank at about the same time, and a worker may exit first: wait a moment
        // for our own signal (whose handler checkpoints) before calling the gang broken.
        setTimeout(() => {
          log(`rank ${peer} disconnected at step ${step}; the gang is broken, exiting`);
          process.exit(1);
        }, 1000).unref();
      });
      socket.on('error', () => undefined);
    });
    await new Promise((resolve) => server.listen(masterPort, '0.0.0.0', resolve));
    while (workers.size < worldSize - 1) await new Promise((resolve) => (wake = resolve));
  }
  log(`world of ${worldSize} ranks ready at step ${step} of ${steps}`);
  while (step < steps) {
    pending.clear();
    for (const socket of workers.values()) send(socket, { step, w });
    const own = gradient(w, step);
    while (pending.size < worldSize - 1) await new Promise((resolve) => (wake = resolve));
    const sum = new Array(features).fill(0);
    let loss = 0;
    for (let r = 0; r < worldSize; r++) {
      const part = r === 0 ? own : pending.get(r);
      for (let j = 0; j < features; j++) sum[j] += part.grad[j];
      loss += part.loss;
    }
    // The update and the step counter change together, between two events: a signal always sees a consistent pair.
    w = w.map((v, j) => v - (lr * sum[j]) / worldSize);
    step += 1;
    console.log(JSON.stringify({ tutti: { step, loss: loss / worldSize } }));
    if (step % checkpointEvery === 0 || step === steps) checkpoint(`every ${checkpointEvery} steps`);
    if (stepMs > 0) await sleep(stepMs);
  }
  finished = true;
  for (const socket of workers.values()) send(socket, { done: true, w });
  await sleep(50);
  console.log(`final weights digest: ${digest(w)}`);
  process.exit(0);
}

// ---- ranks 1..n-1: workers -----------------------------------------------------------------------------------
async function runWorker() {
  process.on(stopSignal, () => {
    log(`received ${stopSignal}: nothing to save (rank 0 checkpoints), exiting`);
    process.exit(0);
  });
  let socket;
  for (let tries = 0; ; tries++) {
    try {
      socket = await new Promise((resolve, reject) => {
        const s = net.connect(masterPort, masterAddr, () => resolve(s));
        s.once('error', reject);
      });
      break;
    } catch (error) {
      if (tries > 400) throw error;
      await sleep(25);
    }
  }
  let done = false;
  lines(socket, (message) => {
    if (message.done) {
      done = true;
      console.log(`final weights digest: ${digest(message.w)}`);
      process.exit(0);
    }
    const { grad, loss } = gradient(message.w, message.step);
    send(socket, { rank, step: message.step, grad, loss });
  });
  socket.on('close', () => {
    if (!done) {
      log('rank 0 went away; exiting');
      process.exit(1);
    }
  });
  send(socket, { hello: rank });
}

await (rank === 0 ? runRankZero() : runWorker());
