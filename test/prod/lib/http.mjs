// HTTP(S) requests and small checks shared by the prod test's files.
import { Buffer } from 'node:buffer'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { readFileSync } from 'node:fs'
import { setTimeout } from 'node:timers'
import { gunzipSync } from 'node:zlib'
import { sleep } from './procs.mjs'

export { freePort } from '../../../scripts/lib/local.mjs'

/**
 * One request to 127.0.0.1:port; the body comes back raw, as text and parsed
 * as JSON (gunzipped first when gzipped). `token` is sent as a bearer token
 * unless headers.authorization is given ('' sends none). `tls: { ca, servername }`
 * makes it HTTPS, verifying the certificate against `ca`.
 */
export function request (port, method, path, { headers = {}, body, timeoutMs = 10_000, token, tls } = {}) {
  return new Promise((resolve) => {
    let payload = body
    const h = { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers }
    if (h.authorization === '') delete h.authorization
    if (body !== undefined && !Buffer.isBuffer(body) && typeof body !== 'string') {
      payload = JSON.stringify(body)
      h['content-type'] ??= 'application/json'
    }
    if (payload !== undefined) h['content-length'] = Buffer.byteLength(payload)
    let settled = false
    const done = (v) => {
      if (!settled) {
        settled = true
        resolve(v)
      }
    }
    const mod = tls ? https : http
    const opts = { host: '127.0.0.1', port, method, path, headers: h, agent: false, ...(tls ? { ca: tls.ca, servername: tls.servername } : {}) }
    const req = mod.request(opts, (r) => {
      const chunks = []
      r.on('data', (c) => chunks.push(c))
      r.on('end', () => {
        const raw = Buffer.concat(chunks)
        let json
        try {
          const text = r.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString()
          json = text ? JSON.parse(text) : undefined
        } catch {
          json = undefined
        }
        done({ status: r.statusCode, headers: r.headers, raw, json, text: raw.toString(), socket: r.socket })
      })
      r.on('error', (e) => done({ status: 0, error: e.message, headers: {}, raw: Buffer.alloc(0) }))
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)))
    // A server may answer (413) and close before the whole body is sent:
    // the answer wins over the write error.
    req.on('error', (e) => setTimeout(() => done({ status: 0, error: e.message, headers: {}, raw: Buffer.alloc(0) }), 200))
    if (payload !== undefined) req.end(payload)
    else req.end()
  })
}

/** Sends raw bytes and returns the raw answer (until the server closes, or timeoutMs). */
export function rawRequest (port, bytes, timeoutMs = 5000) {
  return new Promise((resolve) => {
    const chunks = []
    const s = net.connect(port, '127.0.0.1', () => s.end(bytes))
    const finish = () => {
      const text = Buffer.concat(chunks).toString()
      const m = text.match(/^HTTP\/1\.[01] (\d{3})/)
      const bodyAt = text.indexOf('\r\n\r\n')
      const head = bodyAt >= 0 ? text.slice(0, bodyAt) : text
      const headers = {}
      for (const line of head.split('\r\n').slice(1)) {
        const i = line.indexOf(':')
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      const body = bodyAt >= 0 ? text.slice(bodyAt + 4) : ''
      let json
      try {
        json = JSON.parse(body)
      } catch {
        json = undefined
      }
      resolve({ status: m ? Number(m[1]) : 0, headers, text: body, json })
    }
    s.on('data', (c) => chunks.push(c))
    s.on('close', finish)
    s.on('error', () => {})
    s.setTimeout(timeoutMs, () => s.destroy())
  })
}

export async function waitFor (what, fn, timeoutMs, intervalMs = 250) {
  const until = Date.now() + timeoutMs
  let last
  while (Date.now() < until) {
    try {
      last = await fn()
      if (last) return last
    } catch (e) {
      last = e
      if (e?.fatal) throw e
    }
    await sleep(intervalMs)
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last instanceof Error ? ` (${last.message})` : ''}`)
}

/** The JSON lines of a log file. */
export function logEntries (file) {
  const out = []
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return out
  }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      out.push(JSON.parse(line))
    } catch {
      /* not a JSON line */
    }
  }
  return out
}

/** An error answer in the API's shape: {statusCode, code, error, message} as application/json. */
export const isJsonError = (r, status) =>
  r?.status === status &&
  /^application\/json/.test(r.headers['content-type'] ?? '') &&
  r.json?.statusCode === status &&
  typeof r.json?.code === 'string' &&
  typeof r.json?.error === 'string' &&
  typeof r.json?.message === 'string'

/** What to show of a response when a check fails. */
export const brief = (r) => ({ status: r?.status, failure: r?.error, ct: r?.headers?.['content-type'], body: r?.text?.slice(0, 300) })

export function parseEnvFile (file) {
  const env = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = line.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/)
    if (m) env[m[1]] = m[2].replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1')
  }
  return env
}
