import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { BadRequestError, HttpError } from './errors.js'

/**
 * How deeply objects and arrays may nest in a JSON body. Every schema of the API is a
 * few levels deep; `data` is free-form, and deeper than this is no booking's metadata.
 * Past a few thousand levels, parsing, hashing (Idempotency-Key) and pg's serialisation
 * would each overflow the stack: the limit keeps all of them far from it.
 */
export const MAX_JSON_DEPTH = 32

/** Whether `text` nests objects and arrays deeper than `max`, read without recursion (strings skipped). */
function nestsDeeperThan (text: string, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    if (inString) {
      if (ch === 0x5c) i++ // a backslash: skip the escaped character
      else if (ch === 0x22) inString = false
    } else if (ch === 0x22) {
      inString = true
    } else if (ch === 0x7b || ch === 0x5b) {
      if (++depth > max) return true
    } else if (ch === 0x7d || ch === 0x5d) {
      depth--
    }
  }
  return false
}

/**
 * JSON bodies are parsed by Fastify's own parser (prototype poisoning refused), after a
 * flat scan has refused nesting deeper than MAX_JSON_DEPTH with a 400.
 */
export const jsonBodies = fp(async function jsonBodies (app: FastifyInstance) {
  const parse = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string
    if (nestsDeeperThan(text, MAX_JSON_DEPTH)) {
      done(new BadRequestError(`body nests objects and arrays more than ${MAX_JSON_DEPTH} levels deep`), undefined)
      return
    }
    void parse(request, text, done)
  })
}, { name: 'invsys-json-bodies' })

/** How often the event loop's delay is read. */
const SAMPLE_MS = 1000
/** The delay histogram's resolution: each sample is late by at least this much. */
const RESOLUTION_MS = 10
/** Readings in a row above the limit before shedding starts: one long synchronous task is not overload. */
const LAGGING_READINGS = 3

/**
 * Sheds load before it piles up: once the event loop's mean delay has exceeded
 * MAX_EVENT_LOOP_DELAY_MS in three readings in a row (a second apart, or more when the
 * loop is that late), requests are answered 503 SERVER_BUSY with Retry-After before any
 * work is done for them (even the token lookup), until a reading is below the limit
 * again. /health still answers: the process is alive, only busy, and restarting it would
 * lose what it is doing.
 *
 * What @fastify/under-pressure does for the event loop, with two differences that
 * matter: sampling starts once the app is ready, so the seconds spent compiling schemas
 * at boot are not read as load; and one long task (building the OpenAPI document on its
 * first request blocks the loop for a second on a busy machine) sheds nothing, where
 * under-pressure's rule, one reading above the limit, refuses every request for the
 * next second.
 */
export const loadShedding = fp(async function loadShedding (app: FastifyInstance) {
  const maxDelay = app.config.maxEventLoopDelayMs
  if (maxDelay === 0) return
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  let laggingReadings = 0
  let timer: NodeJS.Timeout | undefined
  let lastReading = 0

  const sample = () => {
    const now = performance.now()
    // Without a single sample the loop did not turn for the whole interval: how late this
    // reading itself is tells how long it stood still.
    const delay = histogram.count > 0 ? histogram.mean / 1e6 - RESOLUTION_MS : now - lastReading - SAMPLE_MS
    laggingReadings = delay > maxDelay ? laggingReadings + 1 : 0
    lastReading = now
    histogram.reset()
  }

  app.addHook('onReady', async () => {
    histogram.enable()
    lastReading = performance.now()
    timer = setInterval(sample, SAMPLE_MS).unref()
  })
  app.addHook('onClose', async () => {
    clearInterval(timer)
    histogram.disable()
  })
  app.addHook('onRequest', async (request) => {
    if (laggingReadings >= LAGGING_READINGS && request.routeOptions.url !== '/health') {
      throw new HttpError('SERVER_BUSY', `the server is overloaded (its event loop lags more than ${maxDelay} ms); retry shortly`)
    }
  })
}, { name: 'invsys-load-shedding', dependencies: ['invsys-config'] })
