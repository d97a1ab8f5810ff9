import { Type, type Static } from '@sinclair/typebox'
import { DateTime, Nullable, PageQuery, Text, Uuid } from './common.js'

export const Container = Type.Object({
  id: Uuid,
  freezer_id: Uuid,
  description: Nullable(Type.String()),
  created_at: DateTime
}, {
  title: 'Container',
  examples: [{ id: '7c1d9e2a-3b4f-4a5c-8d6e-9f0a1b2c3d4e', freezer_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90', description: 'Box 14: cell lines', created_at: '2026-01-05T10:00:00Z' }]
})
export type Container = Static<typeof Container>

export const ContainerInput = Type.Object({
  description: Type.Optional(Nullable(Text(2000)))
}, { title: 'ContainerInput', additionalProperties: false, examples: [{ description: 'Box 16: antibodies' }] })
export type ContainerInput = Static<typeof ContainerInput>

export const ContainerPatch = Type.Object({
  description: Type.Optional(Nullable(Text(2000))),
  freezer_id: Type.Optional(Uuid)
}, { title: 'ContainerPatch', additionalProperties: false, examples: [{ freezer_id: '5b2f0c1e-8d4a-4f7b-9a51-2f3c6d7e8f90' }] })
export type ContainerPatch = Static<typeof ContainerPatch>

export const ContainerParams = Type.Object({ id: Uuid })
export const ContainerListQuery = Type.Object({ ...PageQuery }, { additionalProperties: false })
