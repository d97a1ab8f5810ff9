import { BadRequestError } from '../plugins/errors.js'
import { DEFAULT_DAYS_AHEAD, DEFAULT_DAYS_BACK, MAX_CALENDAR_WINDOW_DAYS } from '../schemas/calendar.js'

export const DAY_MS = 24 * 60 * 60 * 1000

// RFC 3339 allows a leap second (…:60); PostgreSQL reads it as the next minute, and so
// does this, where Date.parse would give NaN.
const LEAP_SECOND = /:60(\.\d+)?(?=Z|[+-]\d\d:\d\d$)/i

/** Milliseconds since the epoch of an RFC 3339 time that the schema has already accepted. */
export function parseTime (value: string): number {
  return LEAP_SECOND.test(value) ? Date.parse(value.replace(LEAP_SECOND, ':59$1')) + 1000 : Date.parse(value)
}

export interface WindowRule {
  /** The longest window, in days. */
  maxDays?: number
  /** Said after "must be before", e.g. what the ends default to. */
  hint?: string
}

/**
 * The one check of a query window [from, to): when both ends are given it must run
 * forwards, and be no longer than `maxDays`. The message names the parameter.
 */
export function assertWindow (query: object, fromName: string, toName: string, rule: WindowRule = {}): void {
  const from = (query as Record<string, unknown>)[fromName]
  const to = (query as Record<string, unknown>)[toName]
  if (typeof from !== 'string' || typeof to !== 'string') return
  const span = parseTime(to) - parseTime(from)
  if (!(span > 0)) throw new BadRequestError(`querystring/${fromName} must be before ${toName}${rule.hint ?? ''}`)
  if (rule.maxDays !== undefined && span > rule.maxDays * DAY_MS) {
    throw new BadRequestError(`querystring/${toName} must be at most ${rule.maxDays} days after ${fromName}`)
  }
}

export interface Window { from: string, to: string }

/**
 * The window of an iCalendar reply: the query's ends, `defaults` for those left out,
 * checked as every calendar is (at most MAX_CALENDAR_WINDOW_DAYS), as ISO 8601 in UTC.
 */
export function calendarWindow (query: Partial<Window>, defaults: Window): Window {
  const asked = { from: query.from ?? defaults.from, to: query.to ?? defaults.to }
  assertWindow(asked, 'from', 'to', {
    maxDays: MAX_CALENDAR_WINDOW_DAYS,
    hint: ` (from defaults to ${DEFAULT_DAYS_BACK} days ago, to to ${DEFAULT_DAYS_AHEAD} days ahead)`
  })
  return { from: new Date(parseTime(asked.from)).toISOString(), to: new Date(parseTime(asked.to)).toISOString() }
}
