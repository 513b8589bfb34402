-- Version 3: online data key rotation across replicas (src/rotation.rs).
-- Every value sealed in this database names the data key that sealed it
-- (its bytes 2 to 5). A rotation makes a new data key current, seals every
-- value again with it, and deletes the old one; a replica that has not yet
-- learned of the rotation may still seal with the old key meanwhile, and
-- the resealing catches those values. Before the old key is deleted it is
-- *retired*: from then on the trigger below refuses a value sealed with
-- it, so that nothing can name it once the last pass found nothing.
-- The trigger takes lock 0x6b65797372657469 ("keysreti") shared, until its
-- transaction ends; the retirement takes it exclusively, so it waits for
-- the writers that checked before it, and those after it see the key
-- retired.

ALTER TABLE data_keys ADD COLUMN retired boolean NOT NULL DEFAULT false;

CREATE FUNCTION keysmith_sealed_with_a_live_key() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v bytea;
    sealed_by integer;
BEGIN
    -- TG_ARGV[0] names the sealed column: `record`, or `value` (driver_state).
    IF TG_ARGV[0] = 'value' THEN
        v := NEW.value;
    ELSE
        v := NEW.record;
    END IF;
    -- Only sealed values (first byte 2, header of 29 bytes) name a key.
    IF length(v) < 29 OR get_byte(v, 0) <> 2 THEN
        RETURN NEW;
    END IF;
    sealed_by := (get_byte(v, 1) << 24) | (get_byte(v, 2) << 16)
        | (get_byte(v, 3) << 8) | get_byte(v, 4);
    PERFORM pg_advisory_xact_lock_shared(7738725071453516905);
    IF NOT EXISTS (SELECT 1 FROM data_keys WHERE id = sealed_by AND NOT retired) THEN
        RAISE EXCEPTION 'a value sealed with data key %, which is retired or unknown: this keysmith has not yet learned of a data key rotation', sealed_by
            USING ERRCODE = 'KS001';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER keys_sealed BEFORE INSERT OR UPDATE OF record ON keys
    FOR EACH ROW EXECUTE FUNCTION keysmith_sealed_with_a_live_key('record');
CREATE TRIGGER reservations_sealed BEFORE INSERT OR UPDATE OF record ON reservations
    FOR EACH ROW EXECUTE FUNCTION keysmith_sealed_with_a_live_key('record');
CREATE TRIGGER idempotency_sealed BEFORE INSERT OR UPDATE OF record ON idempotency
    FOR EACH ROW EXECUTE FUNCTION keysmith_sealed_with_a_live_key('record');
CREATE TRIGGER audit_sealed BEFORE INSERT OR UPDATE OF record ON audit
    FOR EACH ROW EXECUTE FUNCTION keysmith_sealed_with_a_live_key('record');
CREATE TRIGGER changes_sealed BEFORE INSERT OR UPDATE OF record ON changes
    FOR EACH ROW EXECUTE FUNCTION keysmith_sealed_with_a_live_key('record');
CREATE TRIGGER driver_state_sealed BEFORE INSERT OR UPDATE OF value ON driver_state
    FOR EACH ROW EXECUTE FUNCTION keysmith_sealed_with_a_live_key('value');
