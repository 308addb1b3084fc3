// Drives posthog-node against a running router for tests/web/posthog/test_posthog_node.py.
// Usage: node capture.mjs <host> <project token>; POSTHOG_CAPTURE_MODE=v1 selects capture v1.
// Prints {"sent": [every message the SDK queued], "errors": [every error it reported]} as JSON.
import { PostHog } from 'posthog-node'

const [host, token] = process.argv.slice(2)
const client = new PostHog(token, {
  host,
  flushAt: 100,
  flushInterval: 0,
  fetchRetryCount: 0,
  requestTimeout: 10000,
})
const sent = []
const errors = []
for (const type of ['capture', 'identify', 'alias']) client.on(type, (message) => sent.push(message))
client.on('error', (error) => errors.push(String(error?.message ?? error)))

client.capture({
  distinctId: 'node-user-1',
  event: 'signed up',
  uuid: '0190f6d2-7c1e-7b3a-9f5e-1c2d3e4f5a6b',
  properties: { plan: 'pro', seats: 12, ratio: 0.25, beta: true, none: null, text: 'café ☕ 😀',
                nested: { list: [1, 'two', { three: 3 }] } },
})
client.capture({ distinctId: 'node-user-2', event: 'page viewed', properties: { path: '/docs' } })
client.identify({ distinctId: 'node-user-1', properties: { $set: { plan: 'pro' },
                                                           $set_once: { first_seen: '2026-01-01' } } })
client.groupIdentify({ groupType: 'company', groupKey: 'acme', properties: { employees: 40 } })
client.alias({ distinctId: 'node-user-1', alias: 'node-user-1@example' })
await client.shutdown(10000)
process.stdout.write(JSON.stringify({ sent, errors }))
