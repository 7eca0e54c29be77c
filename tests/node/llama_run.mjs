// tests/node/llama_run.mjs MODEL MMAP PROMPT N
// Loads MODEL with llama.cpp (node-llama-cpp, CPU, no build, no download),
// mmap on ("1") or off ("0"), tokenizes PROMPT, then generates N tokens
// greedily.  Prints {"prompt": [ids], "tokens": [ids], "probs": [p of each
// generated token], "template": chat template length} as JSON.
import {getLlama} from 'node-llama-cpp';

async function main() {
  const [modelPath, mmap, prompt, n] = process.argv.slice(2);
  const llama = await getLlama({gpu: false, build: 'never', skipDownload: true,
                                logLevel: 'error', progressLogs: false});
  const model = await llama.loadModel({modelPath, useMmap: mmap === '1', gpuLayers: 0});
  const ctx = await model.createContext({contextSize: 128, threads: 1});
  const seq = ctx.getSequence();
  const input = model.tokenize(prompt);
  const tokens = [], probs = [];
  let feed = input;
  const it = seq.evaluateWithMetadata(feed, {probabilities: true}, {temperature: 0});
  for await (const r of it) {
    tokens.push(r.token);
    probs.push(r.probabilities.get(r.token));
    if (tokens.length >= Number(n))
      break;
  }
  const tmpl = model.fileInfo && model.fileInfo.metadata && model.fileInfo.metadata.tokenizer
    ? String(model.fileInfo.metadata.tokenizer.chat_template || '').length : -1;
  process.stdout.write(JSON.stringify({prompt: input, tokens, probs, template: tmpl}) + '\n');
  await ctx.dispose();
  await model.dispose();
}
main().catch((e) => { process.stderr.write(String(e && e.message || e) + '\n'); process.exit(1); });
