//! Image members: the projects a `shared` image is offered to, and their answers.

use super::*;

/// Image members: the projects a `shared` image is offered to, and their answers.
impl Images {
    fn only_shared(i: &ImageRec) -> Result<()> {
        if i.visibility == "shared" {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "Image {} is {}; only shared images have members.",
                i.id, i.visibility
            )))
        }
    }

    /// Offers a shared image the caller's project owns to another project (`pending`).
    pub async fn add_member(
        &self,
        caller: &Authorized,
        id: &str,
        member: &str,
    ) -> Result<MemberRec> {
        let i = self.owned(caller, id).await?;
        Self::only_shared(&i)?;
        if member.is_empty() || member.len() > 255 {
            return Err(bad("The member is a project id of 1 to 255 characters."));
        }
        if member == i.owner {
            return Err(bad("An image cannot be shared with its owner."));
        }
        let members = store::member_list(self.store.pool(), id).await?.len();
        if members >= limits::IMAGE_MEMBERS {
            return Err(ServiceError::TooLarge(format!(
                "Maximum number of image members exceeded: at most {} projects.",
                limits::IMAGE_MEMBERS
            )));
        }
        let now = now_micros();
        let m = MemberRec {
            image_id: id.to_string(),
            member: member.to_string(),
            status: MemberStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        let mut w = self.store.write().await?;
        store::member_insert(w.conn(), &m)
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => ServiceError::Conflict(format!(
                    "Member {member} already exists for image {id}."
                )),
                other => other.into(),
            })?;
        self.store.commit(w).await?;
        Ok(m)
    }

    /// The owner sees every member; a member project sees only itself.
    pub async fn members(&self, caller: &Authorized, id: &str) -> Result<Vec<MemberRec>> {
        let i = self.get(caller, id).await?;
        Self::only_shared(&i)?;
        let project = caller_project(caller)?;
        let all = store::member_list(self.store.pool(), id).await?;
        Ok(all
            .into_iter()
            .filter(|m| i.owner == project || m.member == project)
            .collect())
    }

    pub async fn member(&self, caller: &Authorized, id: &str, member: &str) -> Result<MemberRec> {
        self.members(caller, id)
            .await?
            .into_iter()
            .find(|m| m.member == member)
            .ok_or_else(|| ServiceError::not_found("member", member))
    }

    /// Only the member project itself answers an offer.
    pub async fn set_member_status(
        &self,
        caller: &Authorized,
        id: &str,
        member: &str,
        status: &str,
    ) -> Result<MemberRec> {
        let mut m = self.member(caller, id, member).await?;
        if m.member != caller_project(caller)? {
            return Err(ServiceError::Forbidden(
                "Only the member project can change its membership status.".into(),
            ));
        }
        one_of("status", status, MEMBER_STATUSES)?;
        m.status = status
            .parse()
            .map_err(|e: store::UnknownState| bad(e.to_string()))?;
        m.updated_at = now_micros();
        let mut w = self.store.write().await?;
        store::member_set_status(w.conn(), id, member, m.status, m.updated_at).await?;
        self.store.commit(w).await?;
        Ok(m)
    }

    pub async fn remove_member(&self, caller: &Authorized, id: &str, member: &str) -> Result<()> {
        let i = self.owned(caller, id).await?;
        Self::only_shared(&i)?;
        let mut w = self.store.write().await?;
        let gone = store::member_delete(w.conn(), id, member).await?;
        self.store.commit(w).await?;
        if gone {
            Ok(())
        } else {
            Err(ServiceError::not_found("member", member))
        }
    }
}
