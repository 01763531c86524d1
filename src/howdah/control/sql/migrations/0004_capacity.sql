-- What each data plane has in all, as its conductor reports it when it registers (NULL: unknown, not checked).
-- A change that asks one instance for more than its data plane has is refused before it is accepted.
ALTER TABLE control.data_planes
    ADD COLUMN cpu           numeric CHECK (cpu > 0),            -- cores
    ADD COLUMN memory_bytes  bigint  CHECK (memory_bytes > 0),
    ADD COLUMN storage_bytes bigint  CHECK (storage_bytes > 0);
