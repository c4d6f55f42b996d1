-- A guard of a pipelined write: raises (SQLSTATE PGG01) when the condition a write depends
-- on does not hold, which aborts the transaction, so the statements sent after it do nothing.
CREATE FUNCTION pushgate_guard(holds boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF holds IS NOT TRUE THEN
        RAISE EXCEPTION 'pushgate: a write guard failed' USING ERRCODE = 'PGG01';
    END IF;
END
$$;
