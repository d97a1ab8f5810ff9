-- Version 9: a NOTIFY on invsys_credentials naming each token or account that changes,
-- so that API replicas may keep recent token lookups (services/api/src/plugins/token-cache.ts)
-- and drop them the moment one is revoked, deleted or its account's role changes.

-- Tells API replicas which token or account changed (revoked, deleted, its role...), so
-- that they drop the token lookups they keep for it; a TRUNCATE drops them all. The
-- payload is 'token <id>', 'account <id>' or '*'.
CREATE FUNCTION notify_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('invsys_credentials', CASE
    WHEN TG_LEVEL = 'STATEMENT' THEN '*'
    WHEN TG_TABLE_NAME = 'api_token' THEN 'token ' || OLD.id
    ELSE 'account ' || OLD.id
  END);
  RETURN NULL;
END
$$;
COMMENT ON FUNCTION notify_credentials_changed() IS
  'NOTIFY invsys_credentials with the token or account that changed: API replicas forget what they keep about it.';
-- Not when only last_used_at moved: every lookup the database answers stamps it (at most
-- once a minute), and a notice then would only make the replica drop the lookup it had
-- just kept, and look the token up again.
CREATE TRIGGER api_token_notify_credentials_changed AFTER UPDATE ON api_token
  FOR EACH ROW WHEN ((to_jsonb(OLD) - 'last_used_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at'))
  EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER api_token_notify_credentials_deleted AFTER DELETE ON api_token
  FOR EACH ROW EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER api_token_notify_credentials_truncated AFTER TRUNCATE ON api_token
  FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER account_notify_credentials_changed AFTER UPDATE OR DELETE ON account
  FOR EACH ROW EXECUTE FUNCTION notify_credentials_changed();
CREATE TRIGGER account_notify_credentials_truncated AFTER TRUNCATE ON account
  FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials_changed();
