import type { CalendarEntry } from './database/calendar.js'
import type { Resource } from './schemas/resources.js'

/**
 * RFC 5545 iCalendar text for allocations (one resource's, or a subscribed feed's): CRLF
 * line ends, lines folded at 75 octets, TEXT values escaped, every time in UTC (`Z`), so
 * no VTIMEZONE is needed.
 */

const CRLF = '\r\n'
const MAX_OCTETS = 75

/** TEXT escaping (RFC 5545 3.3.11); control characters other than tab are not allowed in TEXT at all. */
function escapeText (value: string): string {
  const escaped = value
    .replace(/\\/g, '\\\\')
    .replace(/;/g, '\\;')
    .replace(/,/g, '\\,')
    .replace(/\r\n|\r|\n/g, '\\n')
  return [...escaped].filter((ch) => {
    const code = ch.codePointAt(0)!
    return code === 9 || (code >= 32 && code !== 127)
  }).join('')
}

/** Folds a content line at 75 octets (RFC 5545 3.1), never inside a UTF-8 sequence. */
function fold (line: string): string {
  const lines: string[] = []
  let current = ''
  let octets = 0
  for (const ch of line) {
    const size = Buffer.byteLength(ch)
    if (octets + size > MAX_OCTETS) {
      lines.push(current)
      // The continuation's leading space counts towards its 75 octets.
      current = ' '
      octets = 1
    }
    current += ch
    octets += size
  }
  lines.push(current)
  return lines.join(CRLF)
}

const UTC_TIME = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$/

/**
 * 20300601T090000Z from an RFC 3339 UTC time. Fractions of a second are cut towards the
 * outside of the event, so it never shrinks. Undefined for a time iCalendar cannot write
 * (a year beyond 9999 or before 1, possible only through psql).
 */
function utcStamp (time: string, round: 'down' | 'up' = 'down'): string | undefined {
  const match = UTC_TIME.exec(time)
  if (!match) return undefined
  const [, year, month, day, hour, minute, second, fraction] = match as unknown as string[]
  if (round === 'up' && fraction !== undefined && /[1-9]/.test(fraction)) {
    const next = new Date(0)
    // setUTCFullYear, unlike Date.UTC, does not read years below 100 as 19xx.
    next.setUTCFullYear(Number(year), Number(month) - 1, Number(day))
    next.setUTCHours(Number(hour), Number(minute), Number(second) + 1)
    if (next.getUTCFullYear() <= 9999) return next.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
  }
  return `${year}${month}${day}T${hour}${minute}${second}Z`
}

export interface Feed {
  resource: Resource
  /** The window asked for, in UTC with Z: where open ends are cut off. */
  from: string
  to: string
  entries: CalendarEntry[]
}

/** One event: an allocation and the resource it takes. */
interface CalendarEvent extends CalendarEntry {
  resource: { name: string, type: string }
  /** Set when cancelled: said in the description. */
  cancelled_at?: string | null
  /** The name of the resource's site, written as the event's LOCATION when there is one. */
  site?: string | null
}

/** A whole calendar: events of one resource or of many. */
export interface Calendar {
  /** Shown by calendar applications as the calendar's name. */
  name: string
  /** The window, in UTC with Z: where open ends are cut off. */
  from: string
  to: string
  events: CalendarEvent[]
  /** For subscriptions: how often to fetch again, an RFC 5545 duration such as PT15M. */
  refresh?: string
  /** Events of several resources: every summary names its resource. */
  resourceInSummary?: boolean
}

function summary (event: CalendarEvent, calendar: Calendar): string {
  const { name } = event.resource
  const what = event.description === null
    ? (event.kind === 'maintenance' ? `Maintenance: ${name}` : `Booked: ${name}`)
    : (calendar.resourceInSummary ? `${name}: ${event.description}` : event.description)
  if (event.status === 'held') return `Held: ${what}`
  if (event.status === 'cancelled') return `Cancelled: ${what}`
  return what
}

function notes (event: CalendarEvent, calendar: Calendar): string[] {
  const notes = [`${event.kind === 'maintenance' ? 'Maintenance' : 'Booking'} of ${event.resource.type} ${event.resource.name}.`]
  if (event.description !== null) notes.push(event.description)
  if (event.status === 'held') notes.push(`Held until ${event.expires_at}; it is released then unless confirmed.`)
  if (event.status === 'cancelled') notes.push(`Cancelled${event.cancelled_at ? ` at ${event.cancelled_at}` : ''}; it no longer takes the ${event.resource.type}.`)
  if (utcStamp(event.starts_at ?? '') === undefined) notes.push(`Open start: allocated since the beginning of time; shown from the start of this feed (${calendar.from}).`)
  if (utcStamp(event.ends_at ?? '') === undefined) notes.push(`Open end: allocated until further notice; shown until the end of this feed (${calendar.to}).`)
  return notes
}

/** Row times psql may have set beyond iCalendar's years read as now rather than break the feed. */
function stamp (time: string): string {
  return utcStamp(time) ?? utcStamp(new Date().toISOString())!
}

const STATUS: Record<string, string> = { held: 'TENTATIVE', cancelled: 'CANCELLED' }

function event (event: CalendarEvent, calendar: Calendar): string[] {
  return [
    'BEGIN:VEVENT',
    `UID:${event.id}`,
    // Without a METHOD, DTSTAMP is when the event last changed (RFC 5545 3.8.7.2).
    `DTSTAMP:${stamp(event.updated_at)}`,
    // An open end (or one too far out for iCalendar) is cut off at the feed's window.
    `DTSTART:${utcStamp(event.starts_at ?? '', 'down') ?? utcStamp(calendar.from, 'down')}`,
    `DTEND:${utcStamp(event.ends_at ?? '', 'up') ?? utcStamp(calendar.to, 'up')}`,
    `CREATED:${stamp(event.created_at)}`,
    `LAST-MODIFIED:${stamp(event.updated_at)}`,
    `SUMMARY:${escapeText(summary(event, calendar))}`,
    ...(event.site ? [`LOCATION:${escapeText(event.site)}`] : []),
    `DESCRIPTION:${escapeText(notes(event, calendar).join('\n'))}`,
    `CATEGORIES:${event.kind.toUpperCase()}`,
    `STATUS:${STATUS[event.status] ?? 'CONFIRMED'}`,
    // A cancelled event no longer makes anyone busy.
    `TRANSP:${event.status === 'cancelled' ? 'TRANSPARENT' : 'OPAQUE'}`,
    'END:VEVENT'
  ]
}

/** Any calendar: one resource's (the bearer-authenticated routes) or a subscribed feed's. */
export function writeICalendar (calendar: Calendar): string {
  const lines = [
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'PRODID:-//invsys//Resource allocations//EN',
    'CALSCALE:GREGORIAN',
    // VALUE=TEXT tells parsers that do not know this widely used extension to unescape it.
    `X-WR-CALNAME;VALUE=TEXT:${escapeText(calendar.name)}`,
    // How often to fetch again: RFC 7986's property, and the older one Outlook reads.
    ...(calendar.refresh ? [`REFRESH-INTERVAL;VALUE=DURATION:${calendar.refresh}`, `X-PUBLISHED-TTL:${calendar.refresh}`] : []),
    ...calendar.events.flatMap((entry) => event(entry, calendar)),
    'END:VCALENDAR'
  ]
  return lines.map(fold).join(CRLF) + CRLF
}

/** One resource's allocations, named after it. */
export function toICalendar (feed: Feed): string {
  return writeICalendar({
    name: `${feed.resource.name} (${feed.resource.type})`,
    from: feed.from,
    to: feed.to,
    events: feed.entries.map((entry) => ({ ...entry, resource: feed.resource }))
  })
}
