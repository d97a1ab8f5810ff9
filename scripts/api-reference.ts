/**
 * docs/api.md, the API reference, rendered from the OpenAPI document the running app
 * serves at /docs/json (itself made from the routes' TypeBox schemas): every operation
 * with its access, parameters, body, replies and error codes, and every named schema.
 * `npm run docs` writes it (scripts/docs.ts); api-reference.test.ts fails while the file
 * differs from what this makes of the app's own document.
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REFERENCE_DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'api.md')

// The OpenAPI document is JSON of a known shape; read loosely, as the tests do.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>

const METHODS = ['get', 'post', 'put', 'patch', 'delete']

/** Text for a Markdown table cell. */
const cell = (text: string | undefined): string => (text ?? '').replace(/\|/g, '\\|').replace(/\n+/g, ' ')

const refName = (ref: string): string => ref.replace('#/components/schemas/', '')

/** A schema in a few words: its type, format, bounds, enum, or the named schema it is. */
function typeOf (schema: Json | undefined): string {
  if (!schema) return ''
  if (schema.$ref) return `[${refName(schema.$ref)}](#${refName(schema.$ref).toLowerCase()})`
  if (schema.enum) return schema.enum.map((v: unknown) => `\`${JSON.stringify(v)}\``).join(' \\| ') + (schema.nullable ? ' \\| `null`' : '')
  if (schema.anyOf || schema.oneOf) return (schema.anyOf ?? schema.oneOf).map(typeOf).join(' \\| ')
  let type = schema.type === 'array' ? `array of ${typeOf(schema.items)}` : String(schema.type ?? 'any')
  if (schema.format) type += ` (${schema.format})`
  const bounds = [
    schema.minimum !== undefined && `≥ ${schema.minimum}`,
    schema.maximum !== undefined && `≤ ${schema.maximum}`,
    schema.minLength !== undefined && `length ≥ ${schema.minLength}`,
    schema.maxLength !== undefined && `length ≤ ${schema.maxLength}`,
    schema.maxItems !== undefined && `at most ${schema.maxItems} items`,
    schema.default !== undefined && `default \`${JSON.stringify(schema.default)}\``
  ].filter(Boolean)
  if (bounds.length > 0) type += `, ${bounds.join(', ')}`
  return schema.nullable ? `${type}, or \`null\`` : type
}

function parameters (operation: Json): string[] {
  const list: Json[] = operation.parameters ?? []
  if (list.length === 0) return []
  return ['', '| parameter | in | type | required | description |', '|---|---|---|---|---|',
    ...list.map((p) => `| \`${p.name}\` | ${p.in} | ${cell(typeOf(p.schema))} | ${p.required ? 'yes' : 'no'} | ${cell(p.description)} |`)]
}

function body (operation: Json): string[] {
  const media = operation.requestBody?.content?.['application/json']
  if (!media) return []
  return ['', `Body${operation.requestBody.required ? '' : ' (optional)'}: ${typeOf(media.schema)}`]
}

function replies (operation: Json): string[] {
  const rows = Object.entries<Json>(operation.responses ?? {}).map(([status, response]) => {
    const media = response.content?.['application/json'] ?? Object.values<Json>(response.content ?? {})[0]
    const codes = Object.keys(media?.examples ?? {}).filter(() => /^[45]/.test(status))
    const headers = Object.keys(response.headers ?? {})
    const what = codes.length > 0 ? codes.map((code) => `\`${code}\``).join(', ') : cell(response.description)
    const schema = media?.schema ? typeOf(media.schema) : ''
    return `| ${status} | ${what} | ${cell(schema)} | ${headers.join(', ')} |`
  })
  return ['', '| status | meaning or error codes | body | headers |', '|---|---|---|---|', ...rows]
}

function accessOf (operation: Json): string {
  if (Array.isArray(operation.security) && operation.security.length === 0) return 'public, no token'
  return operation['x-access'] === 'admin' ? 'admins' : 'any token (members and admins)'
}

function renderOperation (method: string, url: string, operation: Json): string[] {
  return [
    `### ${method.toUpperCase()} \`${url}\``,
    '',
    `${operation.summary ?? ''}. \`${operation.operationId}\`; ${accessOf(operation)}.`,
    ...(operation.description ? ['', operation.description] : []),
    ...parameters(operation),
    ...body(operation),
    ...replies(operation),
    ''
  ]
}

function renderSchema (name: string, schema: Json): string[] {
  const required = new Set<string>(schema.required ?? [])
  const properties = Object.entries<Json>(schema.properties ?? {})
  return [
    `### ${name}`,
    '',
    ...(schema.description ? [schema.description, ''] : []),
    ...(properties.length === 0
      ? [`${typeOf(schema)}`]
      : ['| field | type | required | description |', '|---|---|---|---|',
          ...properties.map(([key, property]) => `| \`${key}\` | ${cell(typeOf(property))} | ${required.has(key) ? 'yes' : 'no'} | ${cell(property.description)} |`)]),
    ''
  ]
}

/**
 * The reference. The per-type route families (`/api/cars`, …: one per resource type,
 * tagged with its plural, a tag the document does not declare) repeat `/api/resources`
 * with the type fixed, so they are named once rather than listed again.
 */
export function renderApiReference (document: Json): string {
  const tags: Json[] = document.tags ?? []
  const declared = new Set(tags.map((tag) => tag.name))
  const byTag = new Map<string, string[]>()
  const families = new Set<string>()
  for (const [url, item] of Object.entries<Json>(document.paths)) {
    for (const method of METHODS) {
      const operation = item[method]
      if (!operation) continue
      const tag: string = operation.tags?.[0] ?? 'other'
      if (!declared.has(tag)) {
        families.add(tag)
        continue
      }
      byTag.set(tag, [...(byTag.get(tag) ?? []), ...renderOperation(method, url, operation)])
    }
  }
  const sections = tags.filter((tag) => byTag.has(tag.name)).flatMap((tag) => [
    `## ${tag.name}`,
    '',
    `${tag.description}.`,
    '',
    ...(tag.name === 'resources' && families.size > 0
      ? [`Each resource type has the same routes under its plural, with the type fixed (a resource of another type there is 404): ${
          [...families].sort().map((plural) => `\`/api/${plural}\``).join(', ')}; their operationIds name the type (\`createCarAllocation\`).`, '']
      : []),
    ...byTag.get(tag.name)!
  ])
  const schemas = Object.entries<Json>(document.components?.schemas ?? {}).flatMap(([name, schema]) => renderSchema(name, schema))
  return [
    '# API reference',
    '',
    '<!-- Made by `npm run docs` from the OpenAPI document the app serves at /docs/json;',
    '     api-reference.test.ts fails while this file differs from it. Edit the route schemas, not this file. -->',
    '',
    document.info.description,
    '',
    `OpenAPI ${document.openapi}: \`GET /docs/json\` on a running server (Swagger UI at \`/docs\`) has all of this with examples,`,
    'for code generators and for trying requests. Error codes, with what to do about each: [errors.md](errors.md).',
    '',
    ...sections,
    '## Schemas',
    '',
    ...schemas
  ].join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n'
}
