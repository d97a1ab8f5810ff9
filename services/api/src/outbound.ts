import { createHmac } from 'node:crypto'
import dns from 'node:dns'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'

/**
 * Requests invsys makes to addresses an admin gave it (webhooks): where it may connect,
 * how a request is signed, and how it is sent.
 *
 * An admin-given URL must not become a way into the network invsys runs in (server-side
 * request forgery): a host that resolves to a loopback, private, link-local, multicast,
 * unspecified or otherwise reserved address is refused, IPv4-mapped IPv6 included, unless
 * the operator allows its range (WEBHOOK_ALLOWED_CIDRS). DNS can change between two
 * requests, so the check is made at every connection, and the connection goes to the very
 * address that was checked (never resolved again by the HTTP client).
 */

/** A range of addresses, as WEBHOOK_ALLOWED_CIDRS gives them. */
export interface Cidr { address: string, prefix: number, family: 'ipv4' | 'ipv6' }

/** Resolves a host name to its addresses (dns.lookup by default; tests give their own). */
export type Resolver = (hostname: string) => Promise<Array<{ address: string, family: number }>>

export const systemResolver: Resolver = async (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true })

/** Reads "127.0.0.1/32, 10.1.0.0/16, ::1" (a bare address is a single one); throws naming the bad entry. */
export function parseCidrs (text: string): Cidr[] {
  return text.split(',').map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const [address = '', prefixText, extra] = entry.split('/')
    const version = net.isIP(address)
    const max = version === 4 ? 32 : 128
    const prefix = prefixText === undefined ? max : Number(prefixText)
    if (version === 0 || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
      throw new Error(`"${entry}" is not an address or an address/prefix such as 127.0.0.1/32`)
    }
    return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
  })
}

/** The ranges nobody may be sent to unless allowed, by what they are. */
const REFUSED: Record<string, Array<[string, number, 'ipv4' | 'ipv6']>> = {
  unspecified: [['0.0.0.0', 8, 'ipv4'], ['::', 128, 'ipv6']],
  loopback: [['127.0.0.0', 8, 'ipv4'], ['::1', 128, 'ipv6']],
  private: [['10.0.0.0', 8, 'ipv4'], ['172.16.0.0', 12, 'ipv4'], ['192.168.0.0', 16, 'ipv4'], ['100.64.0.0', 10, 'ipv4'], ['fc00::', 7, 'ipv6']],
  'link-local': [['169.254.0.0', 16, 'ipv4'], ['fe80::', 10, 'ipv6'], ['fec0::', 10, 'ipv6']],
  multicast: [['224.0.0.0', 4, 'ipv4'], ['ff00::', 8, 'ipv6']],
  // IETF protocol assignments, benchmarking, the old class E and broadcast, IPv4-compatible IPv6.
  reserved: [['192.0.0.0', 24, 'ipv4'], ['198.18.0.0', 15, 'ipv4'], ['240.0.0.0', 4, 'ipv4'], ['::', 96, 'ipv6']]
}

/** IPv6 ranges that carry an IPv4 address (NAT64, 6to4): judged by that address. */
function embeddedIpv4 (address: string): string | undefined {
  const groups = expandIpv6(address)
  if (!groups) return undefined
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`
  if (groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0)) return v4(groups[6]!, groups[7]!)
  if (groups[0] === 0x2002) return v4(groups[1]!, groups[2]!)
  return undefined
}

/** An IPv6 address as its eight 16-bit groups. */
function expandIpv6 (address: string): number[] | undefined {
  if (net.isIPv6(address) === false) return undefined
  let text = address
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (dotted) {
    const [a, b, c, d] = dotted[1]!.split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, -dotted[1]!.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  return groups.map((g) => parseInt(g, 16))
}

/** Which addresses invsys may connect to: none of the refused ranges, unless allowed. */
export class AddressPolicy {
  private readonly allowed = new net.BlockList()
  private readonly refused = new Map<string, net.BlockList>()

  constructor (allowed: Cidr[]) {
    for (const cidr of allowed) this.allowed.addSubnet(cidr.address, cidr.prefix, cidr.family)
    for (const [kind, ranges] of Object.entries(REFUSED)) {
      const list = new net.BlockList()
      for (const [address, prefix, family] of ranges) list.addSubnet(address, prefix, family)
      this.refused.set(kind, list)
    }
  }

  /** Why `address` may not be connected to ("a loopback address"), or undefined when it may. */
  refusal (address: string): string | undefined {
    const family = net.isIPv4(address) ? 'ipv4' : 'ipv6'
    // BlockList checks an IPv4-mapped IPv6 address (::ffff:127.0.0.1) against IPv4 ranges too.
    if (this.allowed.check(address, family)) return undefined
    for (const [kind, list] of this.refused) {
      if (list.check(address, family)) return `${address} is ${kind === 'unspecified' ? 'an unspecified' : `a ${kind}`} address`
    }
    const inner = family === 'ipv6' ? embeddedIpv4(address) : undefined
    if (inner !== undefined) {
      const innerRefusal = this.refusal(inner)
      if (innerRefusal) return `${address} carries ${innerRefusal.replace(/ is /, ', which is ')}`
    }
    return undefined
  }
}

/** The host of a URL as a bare address or name (an IPv6 literal without its brackets). */
function hostOf (url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1')
}

/** A URL invsys will not connect to, with the reason (which names the address, never anything secret). */
export class TargetRefused extends Error {}

interface Target { address: string, family: 4 | 6 }

/**
 * Where a request to `url` may go: the host's addresses, each checked. Every address the
 * name resolves to must be allowed (a name that also points inside is refused whole), and
 * the first is the one to connect to. Throws TargetRefused.
 */
export async function resolveTarget (url: URL, policy: AddressPolicy, resolve: Resolver): Promise<Target> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TargetRefused('only http and https URLs are allowed')
  const host = hostOf(url)
  let addresses: Array<{ address: string, family: number }>
  if (net.isIP(host) !== 0) {
    addresses = [{ address: host, family: net.isIP(host) }]
  } else {
    try {
      addresses = await resolve(host)
    } catch (error) {
      throw new TargetRefused(`${host} does not resolve (${(error as { code?: string }).code ?? 'no address'})`)
    }
  }
  if (addresses.length === 0) throw new TargetRefused(`${host} does not resolve`)
  for (const { address } of addresses) {
    const refusal = policy.refusal(address)
    if (refusal) throw new TargetRefused(host === address ? `${refusal}, which is not allowed` : `${host} resolves to ${refusal}, which is not allowed`)
  }
  const first = addresses[0]!
  return { address: first.address, family: first.family === 6 ? 6 : 4 }
}

/** A Standard Webhooks v1 signature: base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed by the secret's bytes. */
export function signature (secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`
}

interface Answer {
  status: number
  /** The Retry-After header, as sent. */
  retryAfter: string | undefined
}

/**
 * POSTs `body` to `url`, connecting to `target` (already checked) and nowhere else.
 * Redirects are not followed: a 3xx is an answer like any other. Resolves with the status
 * as soon as it arrives (the rest of the reply is read and dropped); rejects on a
 * connection error, after `timeoutMs` in all, or when `signal` aborts.
 */
export function postJson (url: URL, target: Target, headers: Record<string, string>, body: string, timeoutMs: number, signal?: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http
    const request = client.request(url, {
      method: 'POST',
      agent: false,
      signal,
      headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
      // Only ever the checked address: the name is not resolved again behind our back.
      lookup: (_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
        if (options.all) callback(null, [{ address: target.address, family: target.family }])
        else callback(null, target.address, target.family)
      }
    } as http.RequestOptions)
    const timer = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs)
    request.on('response', (response) => {
      const retryAfter = response.headers['retry-after']
      resolve({ status: response.statusCode ?? 0, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter })
      response.on('end', () => clearTimeout(timer))
      response.on('error', () => clearTimeout(timer))
      response.resume()
    })
    request.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    request.end(body)
  })
}
