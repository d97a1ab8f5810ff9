import { Type } from '@sinclair/typebox'

/** The longest window one feed may cover; a feed is read whole, so this bounds its size. */
export const MAX_CALENDAR_WINDOW_DAYS = 1096
export const DEFAULT_DAYS_BACK = 30
export const DEFAULT_DAYS_AHEAD = 365

export const CalendarQuery = Type.Object({
  from: Type.Optional(Type.String({ format: 'date-time', description: `Start of the window (default ${DEFAULT_DAYS_BACK} days ago); RFC 3339 with an offset`, examples: ['2030-06-01T00:00:00Z'] })),
  to: Type.Optional(Type.String({ format: 'date-time', description: `End of the window (default ${DEFAULT_DAYS_AHEAD} days ahead); after from, at most ${MAX_CALENDAR_WINDOW_DAYS} days later`, examples: ['2031-06-01T00:00:00Z'] }))
}, { additionalProperties: false })

export const CalendarBody = Type.String({
  description: 'An RFC 5545 iCalendar document: one VEVENT per confirmed allocation or live hold (STATUS:TENTATIVE), UID = allocation id, times in UTC',
  examples: ['BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//invsys//Resource allocations//EN\r\nCALSCALE:GREGORIAN\r\nX-WR-CALNAME:AV-01 Aurora (car)\r\nBEGIN:VEVENT\r\nUID:0d6a3c55-2a8e-4f0e-8a53-6f0b2d9c1e77\r\nDTSTAMP:20300520T080000Z\r\nDTSTART:20300601T090000Z\r\nDTEND:20300601T170000Z\r\nCREATED:20300520T080000Z\r\nLAST-MODIFIED:20300520T080000Z\r\nSUMMARY:Downtown mapping run\r\nDESCRIPTION:Booking of car AV-01 Aurora.\\nDowntown mapping run\r\nCATEGORIES:BOOKING\r\nSTATUS:CONFIRMED\r\nTRANSP:OPAQUE\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n']
})
