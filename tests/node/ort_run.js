// tests/node/ort_run.js MODEL INPUT_JSON
// Loads MODEL with ONNX Runtime (CPU) and runs it on the given inputs.
// INPUT_JSON: {"name": {"dims": [...], "type": "float32", "data": [...]}, ...}
// Prints {"output_name": {"dims": [...], "data": [...]}, ...} as JSON.
'use strict';
const ort = require('onnxruntime-node');
const fs = require('fs');

async function main() {
  const [model, inputFile] = process.argv.slice(2);
  const spec = JSON.parse(fs.readFileSync(inputFile, 'utf8'));
  const session = await ort.InferenceSession.create(model);
  const feeds = {};
  for (const [name, t] of Object.entries(spec)) {
    const Arr = { float32: Float32Array, int64: BigInt64Array, float64: Float64Array, int32: Int32Array }[t.type];
    const data = t.type === 'int64' ? Arr.from(t.data.map(BigInt)) : Arr.from(t.data);
    feeds[name] = new ort.Tensor(t.type, data, t.dims);
  }
  const out = await session.run(feeds);
  const res = {};
  for (const [name, t] of Object.entries(out)) {
    res[name] = { dims: t.dims, data: Array.from(t.data, Number) };
  }
  process.stdout.write(JSON.stringify(res) + '\n');
}
main().catch((e) => { process.stderr.write(String(e && e.message || e) + '\n'); process.exit(1); });
