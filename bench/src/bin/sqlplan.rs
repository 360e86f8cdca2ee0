//! The plan and the time of one SQL statement on a SQLite database, with the SQLite the server
//! bundles (its planner may differ from the system's `sqlite3`): for a statement the
//! `CONTINUUM_SQL_PROFILE=full` profile names as slow.
//!
//!     sqlplan DATABASE FILE_WITH_SQL [PARAM ...]    (text parameters, in order)

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: sqlplan DATABASE FILE_WITH_SQL [PARAM ...]".into());
    }
    let conn = rusqlite::Connection::open_with_flags(
        &args[1],
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    println!("SQLite {}", rusqlite::version());
    let sql = std::fs::read_to_string(&args[2])?;
    let params = &args[3..];
    let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let mut rows = plan.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(row) = rows.next()? {
        let detail: String = row.get(3)?;
        println!("  {detail}");
    }
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let mut statement = conn.prepare(&sql)?;
        let n = statement
            .query_map(rusqlite::params_from_iter(params.iter()), |_| Ok(()))?
            .count();
        println!("{n} rows in {:?}", started.elapsed());
    }
    Ok(())
}
