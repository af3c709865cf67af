//! Schema upgrades keep data usable: images stored before tags and properties were searchable
//! are found by those filters after the upgrade.

use sqlx::{Connection, Executor};
use stratus_store::{image_list, ImageFilter, Store, MIGRATIONS};

#[tokio::test]
async fn images_from_before_search_rows_are_found_after_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    sqlx::any::install_default_drivers();
    {
        // A database as the release with three migrations left it.
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        conn.execute(
            "CREATE TABLE stratus_schema (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at BIGINT NOT NULL)",
        )
        .await
        .unwrap();
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 <= 3) {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO stratus_schema VALUES ($1, $2, 0)")
                .bind(*version)
                .bind(*name)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn.execute(
            "INSERT INTO images (id, owner, enterprise_project_id, name, status, visibility, \
             protected, min_disk, min_ram, properties, tags, created_at, updated_at) VALUES \
             ('i1', 'p1', '0', 'old', 'queued', 'private', 0, 0, 0, '{\"__os_type\": \"Linux\"}', \
             '[\"blue\"]', 1, 1)",
        )
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = Store::open(&url).await.unwrap();
    let mut f = ImageFilter::new("p1", 10);
    f.tags = vec!["blue".into()];
    f.properties = vec![("__os_type".into(), "Linux".into())];
    let found = image_list(store.pool(), &f).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, "i1");
    f.tags = vec!["red".into()];
    assert!(image_list(store.pool(), &f).await.unwrap().is_empty());
    store.close().await;
}
