import type { CalendarEntry } from './database/calendar.js'
import type { Resource } from './schemas/resources.js'

/**
 * RFC 5545 iCalendar text for one resource's allocations: CRLF line ends, lines folded
 * at 75 octets, TEXT values escaped, every time in UTC (`Z`), so no VTIMEZONE is needed.
 */

const CRLF = '\r\n'
const MAX_OCTETS = 75

/** TEXT escaping (RFC 5545 3.3.11); control characters other than tab are not allowed in TEXT at all. */
export function escapeText (value: string): string {
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
export function fold (line: string): string {
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
export function utcStamp (time: string, round: 'down' | 'up' = 'down'): string | undefined {
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

function summary (entry: CalendarEntry, resource: Resource): string {
  const what = entry.description ?? (entry.kind === 'maintenance' ? `Maintenance: ${resource.name}` : `Booked: ${resource.name}`)
  return entry.status === 'held' ? `Held: ${what}` : what
}

function notes (entry: CalendarEntry, feed: Feed): string[] {
  const notes = [`${entry.kind === 'maintenance' ? 'Maintenance' : 'Booking'} of ${feed.resource.type} ${feed.resource.name}.`]
  if (entry.description !== null) notes.push(entry.description)
  if (entry.status === 'held') notes.push(`Held until ${entry.expires_at}; it is released then unless confirmed.`)
  if (utcStamp(entry.starts_at ?? '') === undefined) notes.push(`Open start: allocated since the beginning of time; shown from the start of this feed (${feed.from}).`)
  if (utcStamp(entry.ends_at ?? '') === undefined) notes.push(`Open end: allocated until further notice; shown until the end of this feed (${feed.to}).`)
  return notes
}

/** Row times psql may have set beyond iCalendar's years read as now rather than break the feed. */
function stamp (time: string): string {
  return utcStamp(time) ?? utcStamp(new Date().toISOString())!
}

function event (entry: CalendarEntry, feed: Feed): string[] {
  return [
    'BEGIN:VEVENT',
    `UID:${entry.id}`,
    // Without a METHOD, DTSTAMP is when the event last changed (RFC 5545 3.8.7.2).
    `DTSTAMP:${stamp(entry.updated_at)}`,
    // An open end (or one too far out for iCalendar) is cut off at the feed's window.
    `DTSTART:${utcStamp(entry.starts_at ?? '', 'down') ?? utcStamp(feed.from, 'down')}`,
    `DTEND:${utcStamp(entry.ends_at ?? '', 'up') ?? utcStamp(feed.to, 'up')}`,
    `CREATED:${stamp(entry.created_at)}`,
    `LAST-MODIFIED:${stamp(entry.updated_at)}`,
    `SUMMARY:${escapeText(summary(entry, feed.resource))}`,
    `DESCRIPTION:${escapeText(notes(entry, feed).join('\n'))}`,
    `CATEGORIES:${entry.kind.toUpperCase()}`,
    `STATUS:${entry.status === 'held' ? 'TENTATIVE' : 'CONFIRMED'}`,
    'TRANSP:OPAQUE',
    'END:VEVENT'
  ]
}

export function toICalendar (feed: Feed): string {
  const lines = [
    'BEGIN:VCALENDAR',
    'VERSION:2.0',
    'PRODID:-//invsys//Resource allocations//EN',
    'CALSCALE:GREGORIAN',
    // VALUE=TEXT tells parsers that do not know this widely used extension to unescape it.
    `X-WR-CALNAME;VALUE=TEXT:${escapeText(`${feed.resource.name} (${feed.resource.type})`)}`,
    ...feed.entries.flatMap((entry) => event(entry, feed)),
    'END:VCALENDAR'
  ]
  return lines.map(fold).join(CRLF) + CRLF
}
