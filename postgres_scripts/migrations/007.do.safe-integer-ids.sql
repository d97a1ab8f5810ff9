-- Version 7: every id the API hands out or takes is a JSON number, exact only up to
-- 2^53 - 1 = 9007199254740991. The identity sequences stop there (a POST after a PUT
-- chose the largest site id is refused, 409 IDS_EXHAUSTED, instead of issuing an id that
-- clients would read rounded), and ids chosen by PUT or in psql are held to the same range.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM site WHERE id NOT BETWEEN 1 AND 9007199254740991)
     OR EXISTS (SELECT 1 FROM account WHERE id NOT BETWEEN 1 AND 9007199254740991) THEN
    RAISE EXCEPTION 'sites or accounts with ids outside 1 to 9007199254740991 exist, which the API cannot read exactly: renumber or delete them (psql), then start again';
  END IF;
  -- A sequence past the bound, whose rows are gone since, goes back to the highest id in use.
  IF (SELECT last_value FROM site_id_seq) > 9007199254740991 THEN
    PERFORM setval('site_id_seq', coalesce((SELECT max(id) FROM site), 1), EXISTS (SELECT 1 FROM site));
  END IF;
END
$$;

ALTER TABLE site ALTER COLUMN id SET MAXVALUE 9007199254740991;
ALTER TABLE site ADD CONSTRAINT site_id_range CHECK (id BETWEEN 1 AND 9007199254740991);
ALTER TABLE account ALTER COLUMN id SET MAXVALUE 9007199254740991;
ALTER TABLE account ADD CONSTRAINT account_id_range CHECK (id BETWEEN 1 AND 9007199254740991);
ALTER TABLE allocation_event ALTER COLUMN id SET MAXVALUE 9007199254740991;
