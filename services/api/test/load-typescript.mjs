// tap's `node-arg` (package.json): every test process loads TypeScript through tsx, the
// runner `npm run dev`, the benchmark and the scripts use, instead of tap's own ts-node,
// which compiles each module with `typescript` and cost each test file about 3 s of CPU
// more (docs/testing.md).
//
// tsx leaves the source text out of its source maps unless NODE_V8_COVERAGE was set when
// the process started, and without it tap's coverage cannot map V8's counts back onto the
// .ts lines. tap collects coverage through the inspector instead, so a hook of our own,
// registered after tsx's and so run before it, puts the text in.
import { register } from 'node:module'

await import('tsx')
register('./source-text-hook.mjs', import.meta.url)
