-- An import marks LDM2608's enrolment in session 2 (id 56) as deleted straight in the
-- database, bypassing the API, so its link stays open: an orphaned link.
UPDATE enrolments SET deleted_at = now() WHERE id = 56;
