// A module customization hook (see load-typescript.mjs): adds the source text to the inline
// source map tsx gives each TypeScript module, for tap's coverage report.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const INLINE_MAP = '//# sourceMappingURL=data:application/json;base64,'

export async function load (url, context, nextLoad) {
  const loaded = await nextLoad(url, context)
  const fileUrl = url.split('?')[0]
  if (!/^file:.*\.[cm]?ts$/.test(fileUrl) || loaded.source == null) return loaded
  const code = typeof loaded.source === 'string' ? loaded.source : Buffer.from(loaded.source).toString('utf8')
  const at = code.lastIndexOf(INLINE_MAP)
  if (at < 0) return loaded
  const map = JSON.parse(Buffer.from(code.slice(at + INLINE_MAP.length), 'base64').toString('utf8'))
  if (map.sourcesContent?.every((text) => typeof text === 'string')) return loaded
  map.sourcesContent = [await readFile(fileURLToPath(fileUrl), 'utf8')]
  return { ...loaded, source: code.slice(0, at) + INLINE_MAP + Buffer.from(JSON.stringify(map)).toString('base64') }
}
