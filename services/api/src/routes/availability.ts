import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { findSlots, listFreeTime } from '../database/availability.js'
import { getResource } from '../database/resources.js'
import { actorOf } from '../plugins/auth.js'
import { BadRequestError, NotFoundError } from '../plugins/errors.js'
import { FreeTime, FreeTimeQuery, MAX_SLOT_WINDOW_DAYS, Slot, SlotQuery } from '../schemas/availability.js'
import { errorResponses, READ_ERRORS } from '../schemas/common.js'
import { bookingRulesBind } from '../policy.js'
import { ResourceParams } from '../schemas/resources.js'
import type { Family } from './families.js'
import { sendPage } from './paging.js'
import { assertWindow } from './window.js'

/** The pattern admits P0D and PT0S; a slot of no length is not a question worth answering. */
function assertPositive (duration: string): void {
  if (!/[1-9]/.test(duration)) throw new BadRequestError('querystring/duration must be longer than zero')
}

/** GET <base>/:id/free: `base` is /api/resources or a per-type path such as /api/cars. */
export const freeTimeRoutes: FastifyPluginAsyncTypebox<Family> = async (api, { base, type, tags }) => {
  const noun = type ?? 'resource'

  api.get(`${base}/:id/free`, {
    config: { access: 'member' },
    schema: {
      tags,
      summary: `When a ${noun} is free within a window`,
      description: `The parts of [from, to) where a new booking fits: not taken by a confirmed allocation or a live hold (cancelled allocations and run-out holds do not count), with every buffer kept clear (the neighbours' and the new booking's own), earliest first. For a member, only what the booking rules let them book: within [now + min_notice, now + max_advance) and the opening hours, each gap cut to the slot grid (it starts and ends on it), no gap shorter than min_duration, and nothing in a calendar period whose quota leaves them less than min_duration (nothing at all, without one); a member's window may span at most ${MAX_SLOT_WINDOW_DAYS} days. Open-ended allocations take the rest of the window on their open side.`,
      params: ResourceParams,
      querystring: FreeTimeQuery,
      response: { 200: Type.Array(FreeTime), ...errorResponses(...READ_ERRORS, 404) }
    }
  }, async (request, reply) => {
    const { limit, offset, from, to } = request.query
    const actor = actorOf(request)
    // A member's free time is worked out day by day in the resource's time zone (its opening hours).
    assertWindow(request.query, 'from', 'to', bookingRulesBind(actor) ? { maxDays: MAX_SLOT_WINDOW_DAYS } : {})
    const rows = await listFreeTime(api.readDb(), request.params.id, type, { from, to }, { limit, offset }, { rules: bookingRulesBind(actor), actor: actor.id })
    if (rows.length === 0 && offset === 0 && !await getResource(api.readDb(), request.params.id, type)) {
      throw new NotFoundError(`no ${noun} with id ${request.params.id}`)
    }
    return sendPage(request, reply, rows, { limit, offset })
  })
}

/** GET /api/slots. */
export const slotRoutes: FastifyPluginAsyncTypebox<{ typeNames: string[] }> = async (api, { typeNames }) => {
  api.get('/api/slots', {
    config: { access: 'member' },
    schema: {
      tags: ['availability'],
      summary: 'Find free slots of at least a duration across the resources of a type',
      description: `Free gaps within [from, to) at least duration long, on every resource of the type (at site_id, when given), earliest first (then by resource name), with every buffer kept clear. Each is the whole gap, clipped to the window, so it may be longer than asked; book any part of it. For a member, only what the booking rules let them book: gaps within [now + min_notice, now + max_advance) and the opening hours, on resources whose min_duration and max_duration allow duration, outside calendar periods whose quotas leave them less than duration; on a slot grid each slot is cut to it (it starts and ends on the grid), and left out when a booking of duration from its start would end off the grid. The window may span at most ${MAX_SLOT_WINDOW_DAYS} days; page further ahead with later windows.`,
      querystring: SlotQuery(typeNames),
      response: { 200: Type.Array(Slot), ...errorResponses(...READ_ERRORS) }
    }
  }, async (request, reply) => {
    const { limit, offset, ...search } = request.query
    assertWindow(search, 'from', 'to', { maxDays: MAX_SLOT_WINDOW_DAYS })
    assertPositive(search.duration)
    const actor = actorOf(request)
    const slots = await findSlots(api.readDb(), search, { limit, offset }, { rules: bookingRulesBind(actor), actor: actor.id })
    return sendPage(request, reply, slots, { limit, offset })
  })
}
