/**
 * What a 500-occurrence series costs: one POST /api/resources/:id/series booking 500
 * daily occurrences (one transaction, one INSERT … SELECT FROM unnest … ON CONFLICT DO
 * NOTHING), against the same 500 slots booked one POST at a time, through the whole
 * app (validation, auth, routes, PostgreSQL) on an embedded cluster of its own.
 *
 *   npm run bench:series -- [rounds]
 *
 * Prints the median time of each, the time the rule's expansion alone takes, and the
 * ratio of the two measured in this one run (absolute times depend on the machine).
 */
import { planSeries } from '../src/recurrence.js'
import { buildTestApp, call, createResource } from '../test/helpers.js'

const rounds = Number(process.argv[2] ?? 3)
const OCCURRENCES = 500

const teardowns: Array<() => unknown> = []
const app = await buildTestApp({ teardown: (fn) => { teardowns.push(fn) } })

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

/** Each round in a year of its own, so rounds never collide. */
const body = (round: number) => ({
  starts_at: `${2040 + 2 * round}-01-01T09:00:00Z`,
  ends_at: `${2040 + 2 * round}-01-01T10:00:00Z`,
  time_zone: 'Europe/Lisbon',
  rrule: `FREQ=DAILY;COUNT=${OCCURRENCES}`
})

try {
  const seriesTimes: number[] = []
  const singleTimes: number[] = []
  const expandTimes: number[] = []
  for (let round = 0; round < rounds; round++) {
    const started = performance.now()
    const { occurrences } = planSeries(body(round))
    expandTimes.push(performance.now() - started)

    const lorry = await createResource(app, 'lorry')
    const before = performance.now()
    const res = await call(app, 'POST', `/api/resources/${lorry.id}/series`, body(round))
    seriesTimes.push(performance.now() - before)
    if (res.statusCode !== 201 || res.json().allocations.length !== OCCURRENCES) throw new Error(`series not booked: ${res.body.slice(0, 300)}`)

    const other = await createResource(app, 'lorry')
    const start = performance.now()
    for (const occurrence of occurrences) {
      const single = await call(app, 'POST', `/api/resources/${other.id}/allocations`, occurrence)
      if (single.statusCode !== 201) throw new Error(`single booking refused: ${single.body}`)
    }
    singleTimes.push(performance.now() - start)
  }
  const series = median(seriesTimes)
  const singles = median(singleTimes)
  console.log(`${rounds} rounds; ${OCCURRENCES} daily occurrences in Europe/Lisbon each`)
  console.log(`one series request          median ${series.toFixed(1).padStart(8)} ms  (expanding the rule: ${median(expandTimes).toFixed(1)} ms)`)
  console.log(`${OCCURRENCES} single bookings         median ${singles.toFixed(1).padStart(8)} ms  (${(singles / OCCURRENCES).toFixed(2)} ms each)`)
  console.log(`singles / series: ${(singles / series).toFixed(1)}x`)
} finally {
  for (const teardown of teardowns.reverse()) await teardown()
}
