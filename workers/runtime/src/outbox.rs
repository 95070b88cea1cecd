//! Transactional outbox.
use broker_schemas::Message;
use deadpool_postgres::Transaction;

pub(crate) async fn insert<M: Message>(
    _tx: &Transaction<'_>,
    _message: &M,
    _job_id: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    todo!()
}
