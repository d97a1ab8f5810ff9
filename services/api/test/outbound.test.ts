import t from 'tap'
import { ConfigError, loadConfig } from '../src/config.js'
import { AddressPolicy, parseCidrs, signature } from '../src/outbound.js'

t.test('which addresses webhooks may be sent to, and what WEBHOOK_ALLOWED_CIDRS opens', async (t) => {
  const none = new AddressPolicy([])
  for (const [address, kind] of [
    ['127.0.0.1', 'loopback'], ['127.255.0.9', 'loopback'], ['::1', 'loopback'], ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'],
    ['10.0.0.1', 'private'], ['172.16.5.4', 'private'], ['192.168.1.1', 'private'], ['100.64.0.1', 'private'], ['fd00::1', 'private'], ['::ffff:10.0.0.1', 'private'],
    ['169.254.169.254', 'link-local'], ['fe80::1', 'link-local'], ['224.0.0.1', 'multicast'], ['ff02::1', 'multicast'],
    ['0.0.0.0', 'unspecified'], ['::', 'unspecified'], ['255.255.255.255', 'reserved'], ['::7f00:1', 'reserved']
  ] as const) {
    t.match(none.refusal(address), new RegExp(`is an? ${kind} address`), `${address}: ${kind}`)
  }
  t.match(none.refusal('64:ff9b::a9fe:a9fe'), /carries 169\.254\.169\.254, which is a link-local address/, 'NAT64 is judged by the IPv4 address it carries')
  t.match(none.refusal('2002:a00:1::1'), /carries 10\.0\.0\.1/, '6to4 too')
  for (const address of ['93.184.216.34', '2606:2800:220:1:248:1893:25c8:1946', '::ffff:93.184.216.34', '64:ff9b::5db8:d822', '2002:5db8:d822::1']) {
    t.equal(none.refusal(address), undefined, `${address}: public`)
  }
  const some = new AddressPolicy(parseCidrs('127.0.0.1/32, 10.1.0.0/16, fd00::/8'))
  t.equal(some.refusal('127.0.0.1'), undefined, 'allowed: 127.0.0.1/32')
  t.equal(some.refusal('::ffff:127.0.0.1'), undefined, 'and its IPv4-mapped form')
  t.match(some.refusal('127.0.0.2'), /loopback/, 'only that address of the loopback range')
  t.equal(some.refusal('10.1.200.3'), undefined)
  t.match(some.refusal('10.2.0.1'), /private/)
  t.equal(some.refusal('fd12::1'), undefined)
})

t.test('WEBHOOK_ALLOWED_CIDRS, WEBHOOK_RETRY_SCHEDULE and EVENT_RETENTION_DAYS are read at boot; a bad one stops it naming the variable', async (t) => {
  t.same(parseCidrs(''), [])
  t.same(parseCidrs('::1, 192.0.2.0/24'), [{ address: '::1', prefix: 128, family: 'ipv6' }, { address: '192.0.2.0', prefix: 24, family: 'ipv4' }])
  const config = loadConfig({})
  t.same(config.webhookRetrySchedule, [0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400], 'the Standard Webhooks schedule by default')
  t.equal(config.eventRetentionDays, 30)
  t.same(config.webhookAllowedCidrs, [], 'nothing allowed by default')
  t.same(loadConfig({ WEBHOOK_RETRY_SCHEDULE: '0, 1.5,60' }).webhookRetrySchedule, [0, 1.5, 60])
  for (const [name, value, message] of [
    ['WEBHOOK_ALLOWED_CIDRS', '127.0.0.1/33', /WEBHOOK_ALLOWED_CIDRS must be .*"127\.0\.0\.1\/33"/],
    ['WEBHOOK_ALLOWED_CIDRS', 'localhost', /WEBHOOK_ALLOWED_CIDRS/],
    ['WEBHOOK_ALLOWED_CIDRS', '10.0.0.0/8/1', /WEBHOOK_ALLOWED_CIDRS/],
    ['WEBHOOK_RETRY_SCHEDULE', '0,soon', /WEBHOOK_RETRY_SCHEDULE must be 1 to 50 comma-separated seconds/],
    ['WEBHOOK_RETRY_SCHEDULE', '-1', /WEBHOOK_RETRY_SCHEDULE/],
    ['WEBHOOK_RETRY_SCHEDULE', '0,,5', /WEBHOOK_RETRY_SCHEDULE/],
    ['EVENT_RETENTION_DAYS', '0', /EVENT_RETENTION_DAYS must be a whole number from 1/]
  ] as const) {
    t.throws(() => loadConfig({ [name]: value }), { constructor: ConfigError, message }, `${name}=${value}`)
  }
})

t.test('a signature is the Standard Webhooks one: v1, base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" keyed by the decoded secret', async (t) => {
  // The example of the Standard Webhooks specification.
  t.equal(signature('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'),
    'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=')
})
