//! Test fixtures shared by Outhook's test suites and benchmarks: a throwaway
//! PostgreSQL cluster ([`postgres`]) and a PgBouncer in front of it
//! ([`pgbouncer`]), a recording HTTP receiver ([`receiver`]), the
//! providers' own verification snippets run by real `python3` and `node`
//! processes ([`verifiers`]), and the payload corpus ([`corpus`]).

pub mod corpus;
pub mod otlp;
pub mod pgbouncer;
pub mod postgres;
pub mod receiver;
pub mod verifiers;
