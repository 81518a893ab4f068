//! Requests sent together on one connection and answered in order, so that
//! a batch's reads, and then its writes, take one round trip each.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

/// A request that answers rows (a query) or nothing useful (a command).
type Request<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

/// One statement parameter: an array of one value a row.
pub(super) type Column<'a> = &'a (dyn ToSql + Sync);

/// Requests sent together on one connection and answered in order: one
/// round trip for all of them. Each is sent when first polled, and they are
/// first polled in the order they were pushed.
#[derive(Default)]
pub(super) struct Pipeline<'a> {
    requests: Vec<Request<'a>>,
}

impl<'a> Pipeline<'a> {
    /// Opens the transaction, as the first request.
    pub fn begin(&mut self, pg: &'a Client) {
        self.requests.push(Box::pin(async move {
            pg.batch_execute("BEGIN").await.map(|()| Vec::new())
        }));
    }

    /// Adds a query; returns its place among the answers.
    pub fn push(
        &mut self,
        request: impl std::future::Future<
            Output = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
        > + Send
        + 'a,
    ) -> usize {
        self.requests.push(Box::pin(request));
        self.requests.len() - 1
    }

    /// Adds a command whose row count does not matter.
    pub fn push_execute(
        &mut self,
        request: impl std::future::Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a,
    ) {
        self.requests
            .push(Box::pin(async move { request.await.map(|_| Vec::new()) }));
    }

    /// Adds `statement` over `columns`, arrays of one value a row, unless
    /// they hold no rows: the form of every write of a batch's rows.
    pub fn push_columns<const N: usize>(
        &mut self,
        pg: &'a Client,
        statement: &'a Statement,
        rows: usize,
        columns: [Column<'a>; N],
    ) {
        if rows > 0 {
            self.push_execute(async move { pg.execute(statement, &columns).await });
        }
    }

    /// Sends everything and waits for every answer; the first error wins.
    pub async fn run(self) -> Result<Answers, tokio_postgres::Error> {
        Ok(Answers(
            futures_util::future::try_join_all(self.requests)
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        ))
    }
}

/// The answers of a pipeline, taken out by place.
pub(super) struct Answers(Vec<Option<Vec<tokio_postgres::Row>>>);

impl Answers {
    /// The rows of the request at `place`; none when it was not sent.
    pub fn take(&mut self, place: Option<usize>) -> Vec<tokio_postgres::Row> {
        place
            .and_then(|i| self.0.get_mut(i).and_then(Option::take))
            .unwrap_or_default()
    }
}
