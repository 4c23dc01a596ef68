//! [`ConfigGrpc`]: the tonic `ConfigService` (`admin.proto`) over an [`Admin`]. Encodes
//! objects as serde_json bytes and maps every [`AdminError`] to a gRPC status whose
//! message is the error's JSON body; holds no logic of its own.

use floodgate_proto::v1::config_service_server::ConfigService;
use floodgate_proto::v1::{
    BudgetStatus as BudgetStatusProto, CreateKeyReply, CreateKeyRequest, DeleteReply,
    DeleteRequest, GetRequest, ListReply, ListRequest, Member, ObjectReply, PutRequest,
    RevokeKeyRequest, StatusReply, StatusRequest,
};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::{Admin, AdminError, BudgetStatus, Object};

/// The `ConfigService` of one ledger member.
#[derive(Debug, Clone)]
pub struct ConfigGrpc {
    admin: Admin,
}

impl ConfigGrpc {
    /// The service over `admin`.
    pub fn new(admin: Admin) -> Self {
        Self { admin }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Status> {
    serde_json::to_vec(value).map_err(|error| AdminError::internal(error).to_status())
}

fn object_reply(object: &Object) -> Result<Response<ObjectReply>, Status> {
    Ok(Response::new(ObjectReply {
        object_json: to_json(&object.object)?,
        revision: object.revision,
    }))
}

fn status_of(error: AdminError) -> Status {
    error.to_status()
}

impl From<BudgetStatus> for BudgetStatusProto {
    fn from(budget: BudgetStatus) -> Self {
        Self {
            id: budget.id,
            metric: budget.metric.name().to_owned(),
            window: budget.window.to_owned(),
            action: budget.action.name().to_owned(),
            limit: budget.limit,
            window_start: budget.window_start,
            window_end: budget.window_end,
            settled: budget.settled,
            outstanding: budget.outstanding,
            overrun: budget.overrun,
            alerted: budget.alerted,
            leases: budget.leases,
        }
    }
}

#[tonic::async_trait]
impl ConfigService for ConfigGrpc {
    async fn put(&self, request: Request<PutRequest>) -> Result<Response<ObjectReply>, Status> {
        let request = request.into_inner();
        let object = self
            .admin
            .put(&request.kind, &request.object_json)
            .await
            .map_err(status_of)?;
        object_reply(&object)
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<ObjectReply>, Status> {
        let request = request.into_inner();
        let object = self
            .admin
            .get(&request.kind, &request.id)
            .map_err(status_of)?;
        object_reply(&object)
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let listed = self
            .admin
            .list(&request.into_inner().kind)
            .map_err(status_of)?;
        Ok(Response::new(ListReply {
            objects_json: listed
                .objects
                .iter()
                .map(to_json)
                .collect::<Result<_, _>>()?,
            revision: listed.revision,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteReply>, Status> {
        let request = request.into_inner();
        let revision = self
            .admin
            .delete(&request.kind, &request.id)
            .await
            .map_err(status_of)?;
        Ok(Response::new(DeleteReply { revision }))
    }

    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<CreateKeyReply>, Status> {
        let created = self
            .admin
            .create_key(&request.into_inner().key_json)
            .await
            .map_err(status_of)?;
        Ok(Response::new(CreateKeyReply {
            key: created.key.to_string(),
            id: created.id.clone(),
            prefix: created.prefix.clone(),
            object_json: to_json(&created.object)?,
            revision: created.revision,
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<RevokeKeyRequest>,
    ) -> Result<Response<ObjectReply>, Status> {
        let object = self
            .admin
            .revoke_key(&request.into_inner().id)
            .await
            .map_err(status_of)?;
        object_reply(&object)
    }

    async fn status(
        &self,
        _request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        let status = self.admin.status().await.map_err(status_of)?;
        Ok(Response::new(StatusReply {
            revision: status.revision,
            config_revision: status.config_revision,
            applied_index: status.applied_index,
            node_id: status.node_id,
            leader_id: status.leader_id,
            members: status
                .members
                .into_iter()
                .map(|member| Member {
                    id: member.id,
                    addr: member.addr,
                    voter: member.voter,
                })
                .collect(),
            budgets: status.budgets.into_iter().map(Into::into).collect(),
        }))
    }
}
