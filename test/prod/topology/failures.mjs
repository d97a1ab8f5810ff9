// Failures, last (they take the topology down): a replica killed mid-traffic,
// the database stopped, the last replica stopped.
import { brief, isJsonError, waitFor } from '../lib/http.mjs'
import { sleep, tail } from '../lib/procs.mjs'

export default async function failures (t, topo) {
  const via = (...a) => topo.via(...a)
  const { apiA, apiB, procs } = topo

  // One replica dies (SIGKILL) in the middle of a run of GETs.
  {
    const statuses = []
    let killedAt = -1
    for (let i = 0; i < 30; i++) {
      if (i === 8) {
        procs.kill(apiB, 'SIGKILL')
        killedAt = i
        await Promise.race([apiB.done, sleep(5000)])
      }
      const r = await via('GET', i % 2 ? '/api/sites?limit=5' : `/api/resources/${topo.carId}/allocations`)
      statuses.push(r.status)
      await sleep(100) // 10 requests/s, under the rate limit
    }
    t.ok(apiB.exited, 'api-b was killed (SIGKILL)')
    t.ok(statuses.every((s) => s === 200), `GETs keep succeeding through the other replica (${statuses.length} requests, kill after ${killedAt})`,
      { statuses: statuses.join(' ') })
    const post = await via('POST', `/api/resources/${topo.carId}/allocations`, {
      body: { starts_at: '2030-02-01T10:00:00Z', ends_at: '2030-02-01T12:00:00Z' },
    })
    t.equal(post.status, 201, 'a POST after the failure goes to the live replica: 201', brief(post))
    if (topo.image.healthcheck) t.not(topo.healthcheck(topo.ports.b), 0, "the image's HEALTHCHECK command fails against a dead API")
  }

  // The database goes away: /ready says so (503 JSON, passed through), /health stays up.
  {
    await procs.stop(topo.pg, 'SIGTERM', 15_000)
    t.ok(topo.pg.exited, 'PostgreSQL stopped')
    const r = await waitFor('/ready to answer 503', async () => {
      const x = await via('GET', '/ready')
      return x.status === 503 ? x : null
    }, 10_000).catch(() => null)
    t.ok(r && isJsonError(r, 503), 'GET /ready with the database down: JSON 503', brief(r))
    const s = await Promise.all([1, 2, 3].map(() => via('GET', '/api/sites')))
    t.ok(s.every((x) => isJsonError(x, 503)), "database routes with the database down: the API's JSON 503, passed through",
      { answers: s.map(brief) })
    // ... and that 503 does not take the replica out of nginx's upstream.
    const h = await via('GET', '/health')
    t.equal(h.status, 200, 'GET /health with the database down: still 200', brief(h))
  }

  // The last replica stops (SIGTERM: graceful, exit 0); nginx answers JSON 502.
  {
    const code = await procs.stop(apiA, 'SIGTERM', 15_000)
    t.equal(code, 0, `api-a drains and exits 0 on SIGTERM (exit ${code ?? apiA.signal})`, { log: tail(apiA.log, 5) })
    const r = await via('GET', '/api/sites')
    t.ok(isJsonError(r, 502), 'both replicas down: nginx answers JSON 502', brief(r))
    const h = await via('GET', '/health')
    t.ok(isJsonError(h, 502) && /^[0-9a-f]{32}$/.test(h.headers['x-request-id'] ?? ''), '... on /health too, with a request id', brief(h))
    const p = await via('POST', '/api/sites', { body: { name: 'nowhere' } })
    t.ok(isJsonError(p, 502), '... and for a POST', brief(p))
  }

  const stillUp = procs.running().filter((n) => n !== 'nginx')
  t.same(stillUp, [], 'no API or database process left running')
}
