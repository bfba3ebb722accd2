/**
 * Versioned schema of the embedded journey log. The schema version lives in
 * `PRAGMA user_version`; each migration runs in its own transaction together
 * with the bump of that version, so a crash mid-migration leaves the previous
 * version intact and the migration is simply retried on the next start.
 *
 * Migrations are append-only: never edit one that has shipped, add a new one.
 *
 * @module
 */
import type { DatabaseSync } from "node:sqlite";

/** One schema step. */
export interface Migration {
  /** The `user_version` after this migration; 1, 2, 3, … without gaps. */
  readonly version: number;
  /** Short description, used in error messages. */
  readonly name: string;
  /** SQL run with `exec` inside the migration's transaction. */
  readonly sql: string;
}

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial journey-log schema",
    // STRICT tables make SQLite reject values of the wrong type instead of
    // silently storing them, so a mapping bug fails loudly in tests.
    // JSON columns are TEXT checked with json_valid so a corrupt value can
    // never be stored and later break every read of the character.
    sql: `
CREATE TABLE characters (
  character_id TEXT PRIMARY KEY,
  owner_id TEXT NOT NULL,
  name TEXT NOT NULL,
  race TEXT NOT NULL,
  class_name TEXT NOT NULL,
  custom_prompt TEXT,
  status TEXT NOT NULL DEFAULT 'Healthy' CHECK (status IN ('Healthy', 'Wounded', 'Dead')),
  location_id TEXT,
  location_display_name TEXT,
  location_minor TEXT,
  location_poi_id TEXT,
  turn_count INTEGER NOT NULL DEFAULT 0 CHECK (turn_count >= 0),
  turns_since_last_quest INTEGER NOT NULL DEFAULT 0 CHECK (turns_since_last_quest >= 0),
  turns_since_last_poi INTEGER NOT NULL DEFAULT 0 CHECK (turns_since_last_poi >= 0),
  created_at TEXT NOT NULL
) STRICT;
CREATE INDEX characters_by_owner ON characters (owner_id);

-- Death is final whatever code path writes the status.
CREATE TRIGGER characters_dead_is_final
BEFORE UPDATE OF status ON characters
WHEN OLD.status = 'Dead' AND NEW.status <> 'Dead'
BEGIN
  SELECT RAISE(ABORT, 'character status Dead is final');
END;

CREATE TABLE quests (
  quest_id TEXT PRIMARY KEY,
  character_id TEXT NOT NULL REFERENCES characters (character_id) ON DELETE CASCADE,
  title TEXT NOT NULL,
  summary TEXT NOT NULL,
  details TEXT CHECK (details IS NULL OR json_valid(details)),
  poi_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'abandoned')),
  progress TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(progress) AND json_type(progress) = 'array'),
  started_at TEXT NOT NULL,
  ended_at TEXT,
  CHECK ((status = 'active') = (ended_at IS NULL))
) STRICT;
-- The single-active-quest rule, enforced by the database so two racing
-- writers cannot both start one. Ended quests form the archive.
CREATE UNIQUE INDEX quests_one_active ON quests (character_id) WHERE status = 'active';
CREATE INDEX quests_by_character ON quests (character_id, started_at);

CREATE TABLE combat (
  character_id TEXT PRIMARY KEY REFERENCES characters (character_id) ON DELETE CASCADE,
  combat_id TEXT NOT NULL,
  turn INTEGER NOT NULL,
  enemies TEXT NOT NULL
    CHECK (json_valid(enemies) AND json_type(enemies) = 'array' AND json_array_length(enemies) <= 5),
  notes TEXT,
  started_at TEXT NOT NULL
) STRICT;

-- Quest and location POI references are deliberately not foreign keys: they
-- are hints for the narrator, and a dangling hint must not fail a whole turn.
CREATE TABLE pois (
  poi_id TEXT PRIMARY KEY,
  character_id TEXT NOT NULL REFERENCES characters (character_id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
  created_at TEXT NOT NULL
) STRICT;
CREATE INDEX pois_by_character ON pois (character_id, created_at);

CREATE TABLE narrative_turns (
  character_id TEXT NOT NULL REFERENCES characters (character_id) ON DELETE CASCADE,
  turn_number INTEGER NOT NULL CHECK (turn_number >= 0),
  user_action TEXT NOT NULL,
  narrative TEXT NOT NULL,
  created_at TEXT NOT NULL,
  PRIMARY KEY (character_id, turn_number)
) STRICT, WITHOUT ROWID;

CREATE TABLE turns (
  turn_id TEXT PRIMARY KEY,
  character_id TEXT NOT NULL REFERENCES characters (character_id) ON DELETE CASCADE,
  owner_id TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
  user_action TEXT NOT NULL,
  narrative TEXT,
  intents TEXT CHECK (intents IS NULL OR json_valid(intents)),
  subsystem_summary TEXT CHECK (subsystem_summary IS NULL OR json_valid(subsystem_summary)),
  policy TEXT CHECK (policy IS NULL OR json_valid(policy)),
  usage TEXT CHECK (usage IS NULL OR json_valid(usage)),
  error_type TEXT,
  idempotency_key TEXT,
  request_hash TEXT,
  created_at TEXT NOT NULL,
  completed_at TEXT,
  CHECK ((status = 'running') = (completed_at IS NULL)),
  CHECK ((status = 'failed') = (error_type IS NOT NULL))
) STRICT;
-- At most one running turn per character, whatever the caller does; the
-- partial index also makes crash recovery's scan for running turns cheap.
CREATE UNIQUE INDEX turns_one_running ON turns (character_id) WHERE status = 'running';
CREATE INDEX turns_by_character ON turns (character_id, created_at);

CREATE TABLE turn_events (
  turn_id TEXT NOT NULL REFERENCES turns (turn_id) ON DELETE CASCADE,
  seq INTEGER NOT NULL CHECK (seq >= 0),
  event TEXT NOT NULL CHECK (json_valid(event)),
  PRIMARY KEY (turn_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE idempotency (
  owner_id TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  turn_id TEXT NOT NULL REFERENCES turns (turn_id) ON DELETE CASCADE,
  created_at TEXT NOT NULL,
  PRIMARY KEY (owner_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_by_age ON idempotency (created_at);

CREATE TABLE plugin_state (
  character_id TEXT NOT NULL REFERENCES characters (character_id) ON DELETE CASCADE,
  plugin TEXT NOT NULL,
  value TEXT NOT NULL CHECK (json_valid(value)),
  PRIMARY KEY (character_id, plugin)
) STRICT, WITHOUT ROWID;
`,
  },
];

/** The schema version this code expects. */
export const LATEST_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1].version;

function userVersion(db: DatabaseSync): number {
  const row = db.prepare("PRAGMA user_version").get() as { user_version: number } | undefined;
  return row?.user_version ?? 0;
}

/**
 * Bring `db` to {@link LATEST_VERSION}. Safe when several processes open the
 * same fresh file at once: the version is re-read under the write lock, so a
 * migration another process already applied is skipped.
 *
 * @returns the schema version after migrating.
 * @throws Error when the file was written by a newer version of the service.
 */
export function migrate(db: DatabaseSync, migrations: readonly Migration[] = MIGRATIONS): number {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(`migration "${m.name}" has version ${m.version}, expected ${i + 1}`);
    }
  });
  const latest = migrations.length;
  for (const migration of migrations) {
    // Fast path without taking the write lock: already applied.
    if (userVersion(db) >= migration.version) continue;
    db.exec("BEGIN IMMEDIATE");
    try {
      if (userVersion(db) < migration.version) {
        db.exec(migration.sql);
        // user_version lives in the database header, so this write commits or
        // rolls back together with the schema change.
        db.exec(`PRAGMA user_version = ${migration.version}`);
      }
      db.exec("COMMIT");
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw new Error(`schema migration ${migration.version} (${migration.name}) failed`, {
        cause: error,
      });
    }
  }
  const version = userVersion(db);
  if (version > latest) {
    throw new Error(
      `database schema version ${version} is newer than this service supports (${latest})`,
    );
  }
  return version;
}
