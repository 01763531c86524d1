-- API tokens: issued and revoked through the audited functions of migration 0003, read here.

-- name: issue_token
-- A new token (its org created if missing), audited in the same transaction; HW409 at the org's cap.
SELECT id::text, org_id, name, role, prefix, created_at
  FROM control.issue_token(%(org_id)s, %(name)s, %(role)s, %(token_sha256)s, %(prefix)s, %(max_tokens)s,
                           %(actor_token_id)s, %(actor_role)s);

-- name: tokens_of_org
SELECT id::text, org_id, name, role, prefix, created_at, last_used_at, revoked_at
  FROM control.tokens
 WHERE org_id = %(org_id)s
 ORDER BY created_at;

-- name: active_token_role_for_update
-- The role of an active token of the org, locked until it is revoked; nothing when there is no such token.
SELECT role
  FROM control.tokens
 WHERE org_id = %(org_id)s AND id::text = %(token_id)s AND revoked_at IS NULL
   FOR UPDATE;

-- name: revoke_token
SELECT FROM control.revoke_token(%(org_id)s, %(token_id)s, %(actor_token_id)s, %(actor_role)s);

-- name: token_audit
-- The org's token changes, newest first (the caller reverses them).
SELECT id, token_id::text, action, role, name, via, actor_token_id::text, actor_role, at
  FROM control.token_audit
 WHERE org_id = %(org_id)s
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: authenticate
-- The principal of an active token. last_used_at is written at most once a minute per token: writing it on
-- every request made every GET wait for a WAL flush and queue on the token's row.
WITH t AS (
    SELECT id, org_id, role, last_used_at
      FROM control.tokens
     WHERE token_sha256 = %(token_sha256)s AND revoked_at IS NULL
), touch AS (
    UPDATE control.tokens SET last_used_at = clock_timestamp()
      FROM t
     WHERE control.tokens.id = t.id
       AND (t.last_used_at IS NULL OR t.last_used_at < clock_timestamp() - interval '1 minute')
)
SELECT org_id, role, id::text FROM t;
