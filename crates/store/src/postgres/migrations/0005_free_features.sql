-- A feature may be free (0 credits per unit): its use is recorded and moves
-- no credits.
ALTER TABLE features DROP CONSTRAINT features_credits_per_unit_check;
ALTER TABLE features ADD CONSTRAINT features_credits_per_unit_check CHECK (credits_per_unit >= 0);
