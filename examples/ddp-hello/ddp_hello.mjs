// A stand-in for a distributed training script that needs no GPU or PyTorch: each rank prints the torchrun
// environment tutti gave it, then rank 0 listens on MASTER_ADDR:MASTER_PORT and every other rank connects and
// sends its rank, like a process-group rendezvous. Run it under tutti: examples/ddp-hello.yaml.
import net from 'node:net';

const env = process.env;
const rank = Number(env.RANK);
const worldSize = Number(env.WORLD_SIZE);
const steps = Number(env.DEMO_STEPS ?? 3);
const show = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'CUDA_VISIBLE_DEVICES', 'TUTTI_JOB_ID'];
console.log(`rank ${rank}: ${show.map((k) => `${k}=${env[k]}`).join(' ')}`);

async function rendezvous() {
  if (rank === 0) {
    const seen = new Set();
    await new Promise((resolve, reject) => {
      const server = net.createServer((socket) => {
        socket.on('data', (data) => {
          seen.add(Number(data.toString()));
          socket.end('ok');
          if (seen.size === worldSize - 1) server.close(resolve);
        });
      });
      server.on('error', reject);
      server.listen(Number(env.MASTER_PORT), env.MASTER_ADDR);
      if (worldSize === 1) server.close(resolve);
    });
    console.log(`rank 0: all ${worldSize} ranks joined the rendezvous at ${env.MASTER_ADDR}:${env.MASTER_PORT}`);
  } else {
    for (let attempt = 0; ; attempt++) {
      try {
        await new Promise((resolve, reject) => {
          const socket = net.connect(Number(env.MASTER_PORT), env.MASTER_ADDR, () => socket.write(String(rank)));
          socket.on('data', () => resolve(socket.end()));
          socket.on('error', reject);
        });
        break;
      } catch (error) {
        if (attempt > 100) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    console.log(`rank ${rank}: joined the rendezvous`);
  }
}

await rendezvous();
for (let step = 1; step <= steps; step++) {
  await new Promise((r) => setTimeout(r, 300));
  console.log(`rank ${rank}: step ${step}/${steps} loss=${(1 / (step + rank / 10)).toFixed(3)}`);
}
console.log(`rank ${rank}: done`);
