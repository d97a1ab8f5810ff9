import { RRuleTemporal } from 'rrule-temporal'

/**
 * Recurring series: an RFC 5545 RRULE, checked strictly, expanded into occurrences that
 * keep their local wall-clock time in an IANA time zone.
 *
 * The rule itself (BYDAY, BYMONTHDAY, INTERVAL, invalid dates such as 31 February) is
 * expanded by rrule-temporal, on wall-clock time with no zone (DTSTART in UTC, which has
 * no daylight-saving changes). Each wall-clock time is then placed in the series' zone
 * here, with Intl: RFC 5545 §3.3.5 for a time that does not exist (the spring-forward
 * gap: read with the offset before the gap, so 02:30 becomes 03:30) and for one that
 * exists twice (the autumn overlap: the first of the two). rrule-temporal alone would
 * drop an occurrence that falls in the gap (§3.3.10); a booking that silently goes
 * missing once a year is worse for a lab than one that starts an hour later, and the
 * first occurrence (a DTSTART, §3.3.5) is read this way anyway.
 *
 * Nothing here knows about HTTP: a request that cannot be expanded is a RecurrenceError
 * whose message names the field, for the route to answer with.
 */

export const MAX_OCCURRENCES = 500
export const MAX_YEARS = 2

/** Why a series request cannot be expanded; the message names the field (body/rrule, body/time_zone, …). */
export class RecurrenceError extends Error {}

interface Occurrence { starts_at: string, ends_at: string }

/** The recurrence parts accepted, RFC 5545 §3.3.10 names. */
const PARTS = ['FREQ', 'INTERVAL', 'BYDAY', 'BYMONTHDAY', 'COUNT', 'UNTIL'] as const
type PartName = typeof PARTS[number]
const FREQUENCIES = ['DAILY', 'WEEKLY', 'MONTHLY'] as const
type Frequency = typeof FREQUENCIES[number]

/**
 * UNTIL as written: a UTC date-time (…Z, what RFC 5545 requires beside a zoned DTSTART)
 * is an instant; a date-time without Z is a wall-clock time in the series' zone; a date
 * alone takes in that whole local day. `ms` is epoch ms for utc, wall-clock ms (as if
 * UTC) otherwise.
 */
type Until = { form: 'utc' | 'local' | 'date', ms: number }

interface Rule {
  freq: Frequency
  interval: number
  byDay?: string[]
  byMonthDay?: number[]
  count?: number
  until?: Until
}

const HOUR = 3_600_000
const DAY = 24 * HOUR

function invalid (message: string): RecurrenceError {
  return new RecurrenceError(`body/rrule ${message}`)
}

function parseInteger (name: string, value: string, min: number, max: number): number {
  if (!/^[+-]?\d{1,6}$/.test(value)) throw invalid(`${name} must be a whole number, not ${value}`)
  const n = Number(value)
  if (n < min || n > max) throw invalid(`${name} must be from ${min} to ${max}, not ${value}`)
  return n
}

/** A calendar date-time only if every field is in range (20310231 is refused, not rolled into March). */
function wallClock (year: number, month: number, day: number, hour = 0, minute = 0, second = 0): number | undefined {
  const ms = Date.UTC(year, month - 1, day, hour, minute, second)
  const back = new Date(ms)
  return back.getUTCFullYear() === year && back.getUTCMonth() === month - 1 && back.getUTCDate() === day &&
    back.getUTCHours() === hour && back.getUTCMinutes() === minute && back.getUTCSeconds() === second
    ? ms
    : undefined
}

function parseUntil (value: string): Until {
  const match = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/.exec(value)
  const [, y, mo, d, h, mi, s, z] = match ?? []
  const ms = match ? wallClock(Number(y), Number(mo), Number(d), Number(h ?? 0), Number(mi ?? 0), Number(s ?? 0)) : undefined
  if (ms === undefined || Number(y) < 1000) {
    throw invalid(`UNTIL must be a date-time in UTC such as 20311231T235959Z (or a date such as 20311231), not ${value}`)
  }
  return { form: h === undefined ? 'date' : z ? 'utc' : 'local', ms }
}

function parseByDay (value: string, freq: Frequency): string[] {
  return value.split(',').map((token) => {
    const match = /^([+-]?[1-5])?(MO|TU|WE|TH|FR|SA|SU)$/.exec(token)
    if (!match) throw invalid(`BYDAY must list weekdays such as MO,WE (or, with FREQ=MONTHLY, 1MO or -1FR), not ${token}`)
    if (match[1] !== undefined && freq !== 'MONTHLY') {
      throw invalid(`BYDAY may number a weekday (${token}) only with FREQ=MONTHLY`)
    }
    return `${match[1] === undefined ? '' : Number(match[1])}${match[2]}`
  })
}

function parseByMonthDay (value: string): number[] {
  return value.split(',').map((token) => {
    const day = parseInteger('BYMONTHDAY', token, -31, 31)
    if (day === 0) throw invalid('BYMONTHDAY must be from 1 to 31 or from -31 to -1, not 0')
    return day
  })
}

/**
 * Reads an RRULE value strictly: only FREQ (DAILY, WEEKLY or MONTHLY), INTERVAL, BYDAY,
 * BYMONTHDAY, COUNT and UNTIL, each at most once, and exactly one of COUNT and UNTIL.
 * Names and values are case-insensitive (RFC 5545 §3.1); an "RRULE:" prefix is allowed.
 * DTSTART is refused: the first occurrence is the request's starts_at.
 */
function parseRule (text: string): Rule {
  const rule = text.trim().toUpperCase().replace(/^RRULE:/, '')
  if (/DTSTART/.test(rule)) throw invalid('must not contain DTSTART: the first occurrence is starts_at (in time_zone)')
  if (rule === '') throw invalid('must not be empty; e.g. FREQ=WEEKLY;BYDAY=MO,WE;COUNT=20')
  const parts = new Map<PartName, string>()
  // A trailing ; is forgiven, as many calendar programs write one.
  for (const part of rule.replace(/;$/, '').split(';')) {
    const match = /^([A-Z-]+)=([^=]+)$/.exec(part)
    if (!match) throw invalid(`parts are NAME=VALUE separated by ;, such as FREQ=WEEKLY;COUNT=10; "${part}" is not`)
    const [, name, value] = match as unknown as [string, string, string]
    if (!(PARTS as readonly string[]).includes(name)) {
      throw invalid(`part ${name} is not supported: only ${PARTS.join(', ')} are`)
    }
    if (parts.has(name as PartName)) throw invalid(`has ${name} twice`)
    parts.set(name as PartName, value)
  }
  const freq = parts.get('FREQ')
  if (freq === undefined) throw invalid('needs FREQ (DAILY, WEEKLY or MONTHLY)')
  if (!(FREQUENCIES as readonly string[]).includes(freq)) throw invalid(`FREQ must be DAILY, WEEKLY or MONTHLY, not ${freq}`)
  const frequency = freq as Frequency
  const count = parts.get('COUNT')
  const until = parts.get('UNTIL')
  if (count !== undefined && until !== undefined) throw invalid('must not have both COUNT and UNTIL (RFC 5545): give one')
  if (count === undefined && until === undefined) throw invalid('needs COUNT or UNTIL: a series must end')
  const byMonthDay = parts.get('BYMONTHDAY')
  if (byMonthDay !== undefined && frequency === 'WEEKLY') throw invalid('must not have BYMONTHDAY with FREQ=WEEKLY (RFC 5545)')
  const byDay = parts.get('BYDAY')
  const interval = parts.get('INTERVAL')
  return {
    freq: frequency,
    interval: interval === undefined ? 1 : parseInteger('INTERVAL', interval, 1, 1000),
    ...(byDay === undefined ? {} : { byDay: parseByDay(byDay, frequency) }),
    ...(byMonthDay === undefined ? {} : { byMonthDay: parseByMonthDay(byMonthDay) }),
    ...(count === undefined ? {} : { count: parseCount(count) }),
    ...(until === undefined ? {} : { until: parseUntil(until) })
  }
}

function parseCount (value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1) throw invalid(`COUNT must be a whole number from 1, not ${value}`)
  if (Number(value) > MAX_OCCURRENCES) {
    throw invalid(`COUNT is ${value}: a series has at most ${MAX_OCCURRENCES} occurrences`)
  }
  return Number(value)
}

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter (zone: string): Intl.DateTimeFormat {
  let format = formatters.get(zone)
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric'
    })
    formatters.set(zone, format)
  }
  return format
}

/**
 * The IANA zone as Intl names it (aliases such as US/Eastern become their canonical
 * name), or undefined when Intl does not know it. UTC offsets such as +01:00 are not
 * zones: they say nothing about daylight saving.
 */
function canonicalZone (name: string): string | undefined {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/.test(name)) return undefined
  try {
    return formatter(name).resolvedOptions().timeZone
  } catch {
    return undefined
  }
}

/** The zone's offset from UTC at an instant, in ms (wall clock = instant + offset). */
function offsetAt (zone: string, instant: number): number {
  const second = Math.floor(instant / 1000) * 1000
  const parts = new Map(formatter(zone).formatToParts(new Date(second)).map(({ type, value }) => [type, Number(value)]))
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.get(type) ?? 0
  return Date.UTC(part('year'), part('month') - 1, part('day'), part('hour'), part('minute'), part('second')) - second
}

/** The wall-clock time (ms as if UTC) in `zone` at an instant. */
function toWallClock (zone: string, instant: number): number {
  return instant + offsetAt(zone, instant)
}

/**
 * The instant a wall-clock time in `zone` names, RFC 5545 §3.3.5: of two (the overlap
 * when clocks go back) the first; of none (the gap when they go forward) the time read
 * with the offset before the gap, which lands as far past the gap as it was into it.
 * Offsets a day either side bracket any transition near the time.
 */
function fromWallClock (zone: string, wall: number): number {
  const before = offsetAt(zone, wall - DAY)
  const after = offsetAt(zone, wall + DAY)
  // No change near it (nearly always): one instant, and no need to ask Intl again.
  if (before === after) return wall - before
  const fits = [...new Set([before, after])].map((offset) => wall - offset).filter((instant) => toWallClock(zone, instant) === wall)
  return fits.length > 0 ? Math.min(...fits) : wall - before
}

/** 20310303T090000: the DTSTART form of a wall-clock time (seconds only; any fraction is added back to each occurrence). */
function compact (wall: number): string {
  return new Date(wall).toISOString().slice(0, 19).replace(/[-:]/g, '')
}

function isoDate (ms: number): string {
  return new Date(ms).toISOString()
}

export interface SeriesRequest {
  starts_at: string
  ends_at: string
  time_zone: string
  rrule: string
}

export interface SeriesPlan {
  /** The zone as Intl names it. */
  timeZone: string
  /** The occurrences in order, the first being starts_at/ends_at as given. */
  occurrences: Occurrence[]
}

/** The years a series may start in: four-digit years with room for two more. */
const FIRST_YEAR = 1000
const LAST_YEAR = 9999 - MAX_YEARS

function libraryRule (rule: Rule, dtstart: number): RRuleTemporal {
  const parts = [`FREQ=${rule.freq}`, `INTERVAL=${rule.interval}`]
  if (rule.byDay) parts.push(`BYDAY=${rule.byDay.join(',')}`)
  if (rule.byMonthDay) parts.push(`BYMONTHDAY=${rule.byMonthDay.join(',')}`)
  // Wall-clock time: no zone, so no daylight-saving changes while expanding.
  // includeDtstart: DTSTART is the first occurrence even when the rule would not produce it
  // (RFC 5545 §3.8.5.3: "The DTSTART property value always counts as the first occurrence").
  // maxIterations bounds the work on a rule that never matches (BYMONTHDAY=30 every
  // 12 months from February): a two-year window has at most 732 days.
  return new RRuleTemporal({
    rruleString: `DTSTART;TZID=UTC:${compact(dtstart)}\nRRULE:${parts.join(';')}`,
    includeDtstart: true,
    maxIterations: 2000,
    cache: false
  })
}

function expansionFailed (error: unknown): RecurrenceError {
  return invalid(`cannot be expanded within ${MAX_YEARS} years: ${(error as Error).message}`)
}

/**
 * Every occurrence of a series, or a RecurrenceError naming the field and limit broken.
 * Each later occurrence starts at the wall-clock time the first has in the zone, and
 * lasts exactly as long as the first (RFC 5545 §3.8.5.3 for DTEND: the same exact
 * duration), so 09:00–11:00 Lisbon stays 09:00–11:00 Lisbon across the March change.
 * At most 500 occurrences, and none starting more than 2 years (of wall-clock time)
 * after the first.
 */
export function planSeries (request: SeriesRequest): SeriesPlan {
  const timeZone = canonicalZone(request.time_zone)
  if (!timeZone) {
    throw new RecurrenceError(`body/time_zone must be an IANA time zone name such as Europe/Lisbon or America/New_York, not ${request.time_zone}`)
  }
  const rule = parseRule(request.rrule)
  const start = Date.parse(request.starts_at)
  const duration = Date.parse(request.ends_at) - start
  if (!Number.isFinite(start)) throw new RecurrenceError(`body/starts_at is not a time this server can read: ${request.starts_at}`)
  if (!Number.isFinite(duration)) throw new RecurrenceError(`body/ends_at is not a time this server can read: ${request.ends_at}`)
  if (duration <= 0) throw new RecurrenceError('body/starts_at must be before ends_at')
  const wallStart = toWallClock(timeZone, start)
  const year = new Date(wallStart).getUTCFullYear()
  if (year < FIRST_YEAR || year > LAST_YEAR) {
    throw new RecurrenceError(`body/starts_at must be in the years ${FIRST_YEAR} to ${LAST_YEAR} (local time in ${timeZone}) for a series`)
  }
  const first = new Date(wallStart)
  const wallLimit = Date.UTC(year + MAX_YEARS, first.getUTCMonth(), first.getUTCDate(), first.getUTCHours(),
    first.getUTCMinutes(), first.getUTCSeconds(), first.getUTCMilliseconds())
  const fraction = wallStart - Math.floor(wallStart / 1000) * 1000
  const untilAllows = (wall: number, instant: number): boolean => {
    const until = rule.until
    if (!until) return true
    if (until.form === 'utc') return instant <= until.ms
    if (until.form === 'local') return wall <= until.ms
    return wall < until.ms + DAY
  }
  if (!untilAllows(wallStart, start)) throw invalid('UNTIL is before starts_at')
  const tooLong = () => invalid(`gives occurrences more than ${MAX_YEARS} years after starts_at: a series spans at most ${MAX_YEARS} years ` +
    `(the last occurrence may start up to ${isoDate(fromWallClock(timeZone, wallLimit))}); lower COUNT or UNTIL`)

  const library = libraryRule(rule, wallStart - fraction)
  let candidates: number[]
  try {
    candidates = library.between(new Date(wallStart - fraction), new Date(wallLimit - fraction), true).map((date) => date.epochMilliseconds + fraction)
  } catch (error) {
    throw expansionFailed(error)
  }
  const starts: number[] = []
  for (const wall of candidates) {
    const instant = starts.length === 0 ? start : fromWallClock(timeZone, wall)
    if (!untilAllows(wall, instant)) break
    starts.push(instant)
    if (starts.length === rule.count) break
    if (starts.length > MAX_OCCURRENCES) {
      throw invalid(`gives more than ${MAX_OCCURRENCES} occurrences before UNTIL: a series has at most ${MAX_OCCURRENCES}; lower UNTIL`)
    }
  }
  if (rule.count !== undefined && starts.length < rule.count) throw tooLong()
  if (rule.until && starts.length === candidates.length) {
    // UNTIL may lie beyond the two years: refused only if an occurrence does too.
    let beyond
    try {
      beyond = library.next(new Date(wallLimit - fraction), false)
    } catch {
      throw tooLong()
    }
    if (beyond) {
      const wall = beyond.epochMilliseconds + fraction
      if (untilAllows(wall, fromWallClock(timeZone, wall))) throw tooLong()
    }
  }

  const occurrences = starts.map((instant, i) => i === 0
    ? { starts_at: request.starts_at, ends_at: request.ends_at }
    : { starts_at: isoDate(instant), ends_at: isoDate(instant + duration) })
  for (let i = 1; i < starts.length; i++) {
    if (starts[i]! < starts[i - 1]! + duration) {
      throw new RecurrenceError(`body/ends_at is too late: each occurrence must end before the next starts, and the one at ${occurrences[i - 1]!.starts_at} would still run at ${occurrences[i]!.starts_at}`)
    }
  }
  return { timeZone, occurrences }
}
