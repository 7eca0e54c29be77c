// tests/node/gguf_read.mjs FILE
// Reads FILE's header with @huggingface/gguf (its local-file option) and
// prints {"metadata": {key: value}, "types": {key: type}, "tensors": [...],
// "offset": data section start} as JSON (bigints as decimal strings).
import {gguf} from '@huggingface/gguf';

const file = process.argv[2];
const r = await gguf(file, {allowLocalFile: true, typedMetadata: true,
                            additionalFetchHeaders: {}});
const metadata = {}, types = {};
for (const [k, v] of Object.entries(r.typedMetadata)) {
  metadata[k] = v.value;
  types[k] = v.type === 9 ? [v.type, v.subType] : [v.type];
}
const tensors = r.tensorInfos.map((t) => ({name: t.name, shape: t.shape, dtype: t.dtype,
                                           offset: t.offset}));
process.stdout.write(JSON.stringify({metadata, types, tensors,
                                     offset: r.tensorDataOffset},
                                    (k, v) => typeof v === 'bigint' ? v.toString() : v) + '\n');
