import http from 'node:http'
import type net from 'node:net'

/** One request a test receiver got, and what it answered. */
export interface Received {
  /** When it arrived and when the answer went (ms since the epoch). */
  at: number
  answeredAt: number | undefined
  path: string
  headers: Record<string, string>
  body: string
  status: number | undefined
}

/** What to answer: a status (with headers), after a delay; or hold the request until the receiver closes. */
type Answer = { status: number, headers?: Record<string, string>, delayMs?: number } | 'hang'

/**
 * A webhook receiver on 127.0.0.1 for tests: records every request and every connection,
 * answers as `answer` says (204 by default).
 */
class Receiver {
  readonly received: Received[] = []
  connections = 0
  answer: (request: Received, index: number) => Answer = () => ({ status: 204 })
  private readonly server: http.Server
  private readonly sockets = new Set<net.Socket>()

  constructor () {
    this.server = http.createServer((request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        const received: Received = {
          at: Date.now(),
          answeredAt: undefined,
          path: request.url ?? '/',
          headers: Object.fromEntries(Object.entries(request.headers).map(([k, v]) => [k, String(v)])),
          body: Buffer.concat(chunks).toString('utf8'),
          status: undefined
        }
        this.received.push(received)
        const answer = this.answer(received, this.received.length - 1)
        if (answer === 'hang') return
        setTimeout(() => {
          received.status = answer.status
          received.answeredAt = Date.now()
          response.writeHead(answer.status, answer.headers).end()
        }, answer.delayMs ?? 0)
      })
    })
    this.server.on('connection', (socket: net.Socket) => {
      this.connections++
      this.sockets.add(socket)
      socket.on('close', () => this.sockets.delete(socket))
    })
  }

  async listen (): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return this
  }

  get port (): number {
    return (this.server.address() as net.AddressInfo).port
  }

  url (path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`
  }

  /** Requests for an event, by its webhook-id. */
  of (id: string): Received[] {
    return this.received.filter((r) => r.headers['webhook-id'] === id)
  }

  /** Ends held requests (as a crash of the receiver's peer would) without answering them. */
  dropHeld (): void {
    for (const socket of this.sockets) socket.destroy()
  }

  async close (): Promise<void> {
    this.dropHeld()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

export async function receiver (t: { teardown: (fn: () => unknown) => void }): Promise<Receiver> {
  const created = await new Receiver().listen()
  t.teardown(() => created.close())
  return created
}

/** Waits until `condition` holds, checking every 50 ms, for at most `ms`; false if it never did. */
export async function eventually (condition: () => boolean | Promise<boolean>, ms = 15_000): Promise<boolean> {
  for (const started = Date.now(); Date.now() - started < ms; await new Promise((resolve) => setTimeout(resolve, 50))) {
    if (await condition()) return true
  }
  return condition()
}
