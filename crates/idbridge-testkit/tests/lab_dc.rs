//! The harness against the real lab DC and the real PostgreSQL server.

use idbridge_testkit::{Lab, LabError, TestDatabase};
use ldap3::{Scope, SearchEntry};
use sqlx::{Connection, PgConnection, Row};

#[tokio::test]
async fn an_independent_client_reads_the_seeded_directory() {
    let lab = Lab::load().expect("lab.json");
    let mut ldap = lab
        .admin_connection()
        .await
        .expect("bind as administrator over LDAPS");
    let (entries, _) = ldap
        .search(
            &lab.ad.sync_ou,
            Scope::Subtree,
            "(&(objectCategory=person)(objectClass=user))",
            vec!["sAMAccountName", "displayName", "manager"],
        )
        .await
        .and_then(|r| r.success())
        .expect("search the sync OU");
    let mut names: Vec<String> = entries
        .into_iter()
        .map(SearchEntry::construct)
        .map(|e| e.attrs["sAMAccountName"][0].clone())
        .collect();
    names.sort();
    assert_eq!(names, ["jack", "jill", "josh", "zoe"]);
}

#[tokio::test]
async fn sample_users_bind_with_their_password_and_wrong_passwords_fail() {
    let lab = Lab::load().expect("lab.json");
    let upn = format!("jack@{}", lab.ad.realm.to_lowercase());
    lab.connect(&upn, &lab.ad.sample_password)
        .await
        .expect("jack binds");
    let Err(LabError::Ldap { source, .. }) = lab.connect(&upn, "not-the-password").await else {
        panic!("a wrong password must fail the bind");
    };
    assert!(
        matches!(*source, ldap3::LdapError::LdapResult { ref result } if result.rc == 49),
        "invalidCredentials expected, got {source}"
    );
}

#[tokio::test]
async fn each_test_gets_its_own_ou_and_it_is_removed_with_its_contents() {
    let lab = Lab::load().expect("lab.json");
    let mut ou = lab.test_ou("harness").await.expect("create test OU");
    assert!(ou.dn.ends_with(&lab.ad.tests_ou));
    let user_dn = format!("CN=Temp User,{}", ou.dn);
    ou.ldap()
        .add(
            &user_dn,
            vec![
                ("objectClass", ["user"].into()),
                (
                    "sAMAccountName",
                    [format!("tmp{}", &idbridge_testkit::unique_suffix()[..8]).as_str()].into(),
                ),
            ],
        )
        .await
        .and_then(|r| r.success())
        .expect("add a user in the test OU");
    assert_eq!(ou.count_entries().await.unwrap(), 2);
    let dn = ou.dn.clone();
    ou.remove().await.expect("tree delete");
    let mut ldap = lab.admin_connection().await.unwrap();
    let gone = ldap
        .search(&dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
        .await
        .unwrap();
    assert_eq!(gone.1.rc, 32, "noSuchObject after removal");
}

#[tokio::test]
async fn the_service_account_is_not_an_administrator() {
    let lab = Lab::load().expect("lab.json");
    let mut ldap = lab
        .connect(
            &lab.ad.service_account_upn,
            &lab.ad.service_account_password,
        )
        .await
        .expect("bind");
    // A plain user may not create objects in the domain.
    let denied = ldap
        .add(
            &format!("OU=ShouldNotExist,{}", lab.ad.base_dn),
            vec![("objectClass", ["organizationalUnit"].into())],
        )
        .await
        .expect("request answered");
    assert_eq!(denied.rc, 50, "insufficientAccessRights: {denied:?}");
}

#[tokio::test]
async fn each_test_gets_a_fresh_postgres_database() {
    let db = TestDatabase::create("harness")
        .await
        .expect("create database");
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    let tables: i64 = sqlx::query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a fresh database has no tables");
    sqlx::query("CREATE TABLE t (v text)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    db.drop_database().await.expect("drop database");
}
