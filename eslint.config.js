import neostandard from 'neostandard'
import tseslint from 'typescript-eslint'

// One enforced style (neostandard: the standard style, for TypeScript too), type-aware
// rules where the types say what a line does (promises nobody awaits, awaits of
// non-promises, unsafe any), and a line length readable side by side in a review.
export default tseslint.config(
  // The client fixture imports types generated at test time: openapi.test.ts type-checks it against them.
  { ignores: ['**/dist/**', 'node_modules/**', '.data/**', '.tap/**', 'coverage/**', 'services/api/test/fixtures/client/**'] },
  ...neostandard({ ts: true }),
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // Tests and the SQL layer read JSON and rows typed loosely on purpose.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // Fastify handlers and hooks are async by contract, with or without an await.
      '@typescript-eslint/require-await': 'off',
      // TypeBox's idiom: a schema constant and its Static type share one name.
      '@typescript-eslint/no-redeclare': 'off'
    }
  },
  {
    // tap runs every t.test() it is given; the top-level ones are not awaited by design.
    files: ['services/api/test/**'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' }
  },
  {
    rules: {
      'no-console': 'error',
      // `void promise` marks a promise left running on purpose (no-floating-promises asks for it).
      'no-void': 'off',
      '@stylistic/max-len': ['error', {
        code: 180, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true
      }]
    }
  },
  {
    files: ['scripts/**', 'services/api/bench/**'],
    rules: { 'no-console': 'off' }
  }
)
