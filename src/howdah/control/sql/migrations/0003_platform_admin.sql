-- Platform-wide roles, draining data planes, a cap on active tokens per org and an audit trail of tokens.
--   platform: the platform admin (data planes, anything that crosses orgs; `howdah up` creates one)
--   metrics:  a scraper's token: GET /metrics and nothing else
-- Tokens are issued and revoked only through control.issue_token / control.revoke_token, which write the audit
-- record in the same transaction.

ALTER TABLE control.tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE control.tokens ADD CONSTRAINT tokens_role_check
    CHECK (role IN ('platform', 'metrics', 'admin', 'member', 'viewer'));
CREATE INDEX tokens_active_per_org ON control.tokens (org_id) WHERE revoked_at IS NULL;

-- A draining data plane keeps its instances but receives no new ones.
ALTER TABLE control.data_planes ADD COLUMN draining boolean NOT NULL DEFAULT false;

CREATE TABLE control.token_audit (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         text        NOT NULL REFERENCES control.orgs (id) ON DELETE CASCADE,
    token_id       uuid        NOT NULL,
    action         text        NOT NULL CHECK (action IN ('created', 'revoked')),
    role           text        NOT NULL,
    name           text        NOT NULL,
    -- who did it: a token through the API, or someone with direct database access (`howdah up`,
    -- `howdah token create`); 'migration' marks what existed before this table did
    via            text        NOT NULL CHECK (via IN ('api', 'database', 'migration')),
    actor_token_id uuid,
    actor_role     text,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((via = 'api') = (actor_token_id IS NOT NULL AND actor_role IS NOT NULL))
);
CREATE INDEX token_audit_per_org ON control.token_audit (org_id, id);

INSERT INTO control.token_audit (org_id, token_id, action, role, name, via, at)
SELECT org_id, id, 'created', role, name, 'migration', created_at FROM control.tokens;
INSERT INTO control.token_audit (org_id, token_id, action, role, name, via, at)
SELECT org_id, id, 'revoked', role, name, 'migration', revoked_at FROM control.tokens WHERE revoked_at IS NOT NULL;

-- A new token for org_id (created if missing), unless the org already has `cap` active tokens (SQLSTATE HW409).
-- The org's row is locked first, so concurrent issuers are counted one after another and the cap holds.
CREATE FUNCTION control.issue_token(
    org_id text, name text, role text, token_sha256 text, prefix text, cap integer,
    actor_token_id uuid, actor_role text
) RETURNS control.tokens
LANGUAGE plpgsql AS $$
DECLARE
    active bigint;
    issued control.tokens;
BEGIN
    INSERT INTO control.orgs (id, name) VALUES (issue_token.org_id, issue_token.org_id)
    ON CONFLICT (id) DO NOTHING;
    PERFORM 1 FROM control.orgs o WHERE o.id = issue_token.org_id FOR UPDATE;
    SELECT count(*) INTO active FROM control.tokens t
     WHERE t.org_id = issue_token.org_id AND t.revoked_at IS NULL;
    IF active >= cap THEN
        RAISE EXCEPTION 'org "%" already has % active tokens (the limit is %): revoke one before creating another',
            issue_token.org_id, active, cap USING ERRCODE = 'HW409';
    END IF;
    INSERT INTO control.tokens (org_id, name, role, token_sha256, prefix)
    VALUES (issue_token.org_id, issue_token.name, issue_token.role, issue_token.token_sha256, issue_token.prefix)
    RETURNING * INTO issued;
    INSERT INTO control.token_audit (org_id, token_id, action, role, name, via, actor_token_id, actor_role)
    VALUES (issued.org_id, issued.id, 'created', issued.role, issued.name,
            CASE WHEN issue_token.actor_token_id IS NULL THEN 'database' ELSE 'api' END,
            issue_token.actor_token_id, issue_token.actor_role);
    RETURN issued;
END
$$;

-- Revoke an active token of org_id; NULL when there is none (unknown, another org's, or already revoked).
CREATE FUNCTION control.revoke_token(org_id text, token_id text, actor_token_id uuid, actor_role text)
RETURNS control.tokens
LANGUAGE plpgsql AS $$
DECLARE
    revoked control.tokens;
BEGIN
    UPDATE control.tokens t SET revoked_at = clock_timestamp()
     WHERE t.org_id = revoke_token.org_id AND t.id::text = revoke_token.token_id AND t.revoked_at IS NULL
    RETURNING * INTO revoked;
    IF revoked.id IS NOT NULL THEN
        INSERT INTO control.token_audit (org_id, token_id, action, role, name, via, actor_token_id, actor_role)
        VALUES (revoked.org_id, revoked.id, 'revoked', revoked.role, revoked.name,
                CASE WHEN revoke_token.actor_token_id IS NULL THEN 'database' ELSE 'api' END,
                revoke_token.actor_token_id, revoke_token.actor_role);
    END IF;
    RETURN revoked;
END
$$;
