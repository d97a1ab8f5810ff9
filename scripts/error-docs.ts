/**
 * docs/errors.md, made from ERROR_CODES (services/api/src/plugins/errors.ts), the list of
 * every code a client can see. `npm run docs` writes it (scripts/docs.ts); error-codes.test.ts
 * fails while the file differs from what this makes.
 */
import { STATUS_CODES } from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ERROR_CODES, type ErrorInfo } from '../services/api/src/plugins/errors.js'
import { escapePlaceholders } from '../services/api/src/plugins/openapi.js'

export const ERRORS_DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'errors.md')

/** Text for a Markdown table cell: placeholders as code (as in the OpenAPI document), not HTML tags. */
function cell (text: string): string {
  return escapePlaceholders(text).replace(/\|/g, '\\|')
}

/** What a few codes carry besides the four fields every error has. */
const EXTRAS: Record<string, string> = {
  ALLOCATION_CONFLICT: 'The body also has `conflicts`: the allocations in the way.',
  UNAUTHENTICATED: 'With `WWW-Authenticate: Bearer realm="invsys"`.',
  INVALID_TOKEN: 'With `WWW-Authenticate: Bearer realm="invsys", error="invalid_token"`.',
  IDEMPOTENCY_KEY_IN_USE: 'With `Retry-After`.',
  DATABASE_UNAVAILABLE: 'With `Retry-After`.'
}

export function renderErrorsDoc (): string {
  const rows = Object.entries<ErrorInfo>(ERROR_CODES).map(([code, { status, meaning, action }]) => {
    const what = [action ? `${action.charAt(0).toUpperCase()}${action.slice(1)}.` : '', EXTRAS[code] ?? ''].filter(Boolean).join(' ')
    return `| \`${code}\` | ${status} ${STATUS_CODES[status] ?? ''} | ${cell(meaning)} | ${cell(what)} |`
  })
  return `# Error codes

<!-- Made by \`npm run docs\` from ERROR_CODES in services/api/src/plugins/errors.ts;
     error-codes.test.ts fails while this file differs from it. Edit ERROR_CODES, not this file. -->

Every error reply, whatever the route, is JSON with the same five fields, and never an HTML
page or a stack trace:

\`\`\`json
{"statusCode": 409, "code": "DUPLICATE", "error": "Conflict", "message": "name is already used by another resource of this type", "hint": "${ERROR_CODES.DUPLICATE.action}"}
\`\`\`

- \`statusCode\` is the HTTP status again, and \`error\` its reason phrase.
- \`code\` says what happened: branch on it. Each code has one status, listed below.
- \`message\` is for people: it names the field or the thing, and its wording may change.
- \`hint\` is for people too: what to do about it, the same for every error of that code (the
  last column below).

A failed request changes nothing stored, so one that may work later (a 409
\`CONCURRENT_UPDATE\`, a 503) can simply be sent again; with an \`Idempotency-Key\`, any
creating \`POST\` can. The OpenAPI document (\`GET /docs/json\`, shown at \`/docs\`) lists, for
each operation and each of its error statuses, an example of every code it can answer with.

| code | status | meaning | what to do |
|---|---|---|---|
${rows.join('\n')}
`
}
